//! One module per runc command. Each takes the parsed flags and returns the crate's `Result`;
//! the exit status is 0 on success and 1 on error, except `run`, which returns the container's.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use crate::cli::{Cli, Command};
use crate::Result;

/// Runs the command of `cli`; returns the process exit status.
pub fn dispatch(cli: &Cli) -> Result<i32> {
    let root = cli.root.as_path();
    match &cli.command {
        Command::Create(a) => create::create(root, a, create::Attach::Detached).map(|_| 0),
        Command::Start(a) => start::start(root, &a.id).map(|()| 0),
        Command::State(a) => state::state(root, &a.id).map(|()| 0),
        Command::Kill(a) => kill::kill(root, &a.id, &a.signal, a.all).map(|()| 0),
        Command::Delete(a) => delete::delete(root, &a.id, a.force).map(|()| 0),
        Command::Run(a) => run::run(root, a),
        Command::List(a) => list::list(root, a).map(|()| 0),
        Command::Spec(a) => spec::spec(a).map(|()| 0),
        Command::Exec(a) => exec::exec(root, a),
        Command::Ps(a) => ps::ps(root, a).map(|()| 0),
        Command::Pause(a) => pause::pause(root, &a.id).map(|()| 0),
        Command::Resume(a) => pause::resume(root, &a.id).map(|()| 0),
        Command::Update(a) => update::update(root, a).map(|()| 0),
        Command::Events(a) => events::events(root, a).map(|()| 0),
        Command::Features => features::features().map(|()| 0),
        Command::Init => Ok(crate::init::run()),
    }
}
