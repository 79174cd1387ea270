//! One module per group of API routes, as dockerd's routers are: [`system`] for `/_ping`,
//! `/version`, `/info` and `/auth`, [`system_df`] for `/system/df`, [`events`] for `/events`,
//! [`images`], [`image_pull`] and [`image_prune`] for the image routes.
//! [`dispatch`] is the only place a [`Route`] meets its handler.

pub mod events;
pub mod image_prune;
pub mod image_pull;
pub mod images;
pub mod system;
pub mod system_df;

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::engine::Engine;
use crate::errors::ApiResult;
use crate::http::{self, Body};
use crate::router::{Route, Routed};

/// Runs the handler of `routed.route`.
pub async fn dispatch(
    engine: &Engine,
    routed: &Routed,
    request: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let params = http::query_params(request.uri().query());
    match &routed.route {
        Route::Ping => Ok(system::ping(request.method())),
        Route::Version => system::version(engine).await,
        Route::Info => system::info(engine).await,
        Route::Events => events::events(engine, &params).await,
        Route::SystemDf => system_df::df(engine, &params).await,
        Route::Auth => system::auth(http::read_json(request).await?).await,
        Route::ImageList => images::list(engine, &params).await,
        Route::ImageInspect(name) => images::inspect(engine, name).await,
        Route::ImageHistory(name) => images::history(engine, name).await,
        Route::ImageDelete(name) => images::delete(engine, name, &params).await,
        Route::ImageTag(name) => images::tag(engine, name, &params).await,
        Route::ImagePrune => image_prune::prune(engine, &params).await,
        Route::ImageCreate => image_pull::create(engine, &params).await,
    }
}
