//! One module per group of API routes, as dockerd's routers are: [`system`] for `/_ping`,
//! `/version` and `/info`. [`dispatch`] is the only place a [`Route`] meets its handler.

pub mod system;

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::engine::Engine;
use crate::errors::ApiResult;
use crate::http::Body;
use crate::router::{Route, Routed};

/// Runs the handler of `routed.route`.
pub async fn dispatch(
    engine: &Engine,
    routed: &Routed,
    request: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    match routed.route {
        Route::Ping => Ok(system::ping(request.method())),
        Route::Version => system::version(engine).await,
        Route::Info => system::info(engine).await,
    }
}
