//! Bad input from the `containerd-client` crate, sent to a real containerd 1.6 and to
//! keel-containerd alike (both running tasks through our shim, so the supervisor is the only
//! difference): unknown namespace, container, task or exec; duplicate ids; invalid ids; a
//! container without a spec or a runtime, a spec that is not JSON; a task in the wrong state; a
//! namespace that is not empty. Every refusal must come with containerd's gRPC code (NotFound,
//! AlreadyExists, InvalidArgument, FailedPrecondition), or the where containerd departs
//! from its own convention, and keel-containerd's message must name the object refused.

mod client_session;

use anyhow::{bail, Context, Result};
use client_session::{Session, SIGKILL, SPEC_TYPE};
use containerd_client::services::v1::{
    CreateNamespaceRequest, DeleteNamespaceRequest, GetContainerRequest, GetNamespaceRequest,
    GetRequest, Namespace, PauseTaskRequest,
};
use containerd_client::tonic::{Code, Status};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::keel_shim::Stack;
use keel_integration_tests::peers::Peer;
use keel_integration_tests::require_root;
use prost_types::Any;

/// What one call gave: the call, the code, the message (or what the call returned, if it is
/// compared), the object it is about, and what it is checked against.
#[derive(Debug)]
struct Refusal {
    call: &'static str,
    code: Code,
    message: String,
    object: String,
    rule: Rule,
}

/// What a call's outcome on keel-containerd must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// containerd's code (and its result, if the call succeeds).
    Containerd,
    /// This code, where containerd departs from its own errdefs convention.
    Code(Code),
    /// A spec that is not JSON: InvalidArgument from the first call that refuses it, whether
    /// Containers.Create or Tasks.Create (containerd takes it at Containers.Create and fails
    /// Tasks.Create with Unknown).
    MalformedSpec,
}

/// The calls of [`bad_input`], recorded in order.
#[derive(Debug, Default)]
struct Refusals(Vec<Refusal>);

impl Refusals {
    fn record<T>(&mut self, call: &'static str, object: &str, result: Result<T, Status>) {
        self.record_rule(call, object, Rule::Containerd, result.map(|_| ()));
    }

    /// Records a call whose result is compared too (its `Debug` form).
    fn record_value<T: std::fmt::Debug>(
        &mut self,
        call: &'static str,
        object: &str,
        result: Result<T, Status>,
    ) {
        self.record_rule(call, object, Rule::Containerd, result);
    }

    fn record_rule<T: std::fmt::Debug>(
        &mut self,
        call: &'static str,
        object: &str,
        rule: Rule,
        result: Result<T, Status>,
    ) {
        let (code, message) = match result {
            Ok(value) => (Code::Ok, format!("{value:?}")),
            Err(status) => (status.code(), status.message().to_string()),
        };
        self.0.push(Refusal {
            call,
            code,
            message,
            object: object.into(),
            rule,
        });
    }
}

/// Bad input, in order: unknown namespace, container, task and exec; duplicate namespace,
/// container, task and exec; invalid ids; a container without a spec or a runtime, a spec that
/// is not JSON; a task in the wrong state (deleted or started while it runs, paused once
/// gone); a namespace that is not empty.
async fn bad_input(s: &Session) -> Result<Refusals> {
    let mut r = Refusals::default();
    let ns = s.namespace.clone();
    let unknown_ns = "no-such-namespace";
    let create_ns = |name: &str| CreateNamespaceRequest {
        namespace: Some(Namespace {
            name: name.into(),
            ..Default::default()
        }),
    };
    let get_ns = GetNamespaceRequest {
        name: unknown_ns.into(),
    };
    // containerd answers Get of an unknown namespace with no labels: the NotFound.
    let unknown = s.namespaces().get(s.req(get_ns)).await;
    r.record_rule(
        "Namespaces.Get unknown",
        unknown_ns,
        Rule::Code(Code::NotFound),
        unknown,
    );
    let created = s.namespaces().create(s.req(create_ns(&ns))).await;
    r.record("Namespaces.Create", &ns, created);
    let again = s.namespaces().create(s.req(create_ns(&ns))).await;
    r.record("Namespaces.Create duplicate", &ns, again);
    let invalid = s.namespaces().create(s.req(create_ns("a/b"))).await;
    r.record("Namespaces.Create invalid name", "a/b", invalid);

    let get = |id: &str| GetContainerRequest { id: id.into() };
    let unknown = s.containers().get(s.req(get("no-such-container"))).await;
    r.record("Containers.Get unknown", "no-such-container", unknown);
    let elsewhere = s.containers().get(s.req_in(unknown_ns, get("c1"))).await;
    r.record("Containers.Get in an unknown namespace", "c1", elsewhere);
    let c1 = s.container("c1", &["/bin/sleep", "1000"], None)?;
    r.record(
        "Containers.Create",
        "c1",
        s.create_container(c1.clone()).await,
    );
    let again = s.create_container(c1.clone()).await;
    r.record("Containers.Create duplicate", "c1", again);
    let invalid = s.container("a/b", &["/bin/true"], None)?;
    let invalid = s.create_container(invalid).await;
    r.record("Containers.Create invalid id", "a/b", invalid);
    let mut no_spec = s.container("no-spec", &["/bin/true"], None)?;
    no_spec.spec = None;
    let no_spec = s.create_container(no_spec).await;
    r.record("Containers.Create without a spec", "no-spec", no_spec);
    let mut no_runtime = s.container("no-runtime", &["/bin/true"], None)?;
    no_runtime.runtime = None;
    let no_runtime = s.create_container(no_runtime).await;
    r.record(
        "Containers.Create without a runtime",
        "no-runtime",
        no_runtime,
    );
    let not_json = Any {
        type_url: SPEC_TYPE.into(),
        value: b"{not json".to_vec(),
    };
    let bad_spec = s.container("bad-spec", &[], Some(not_json))?;
    let bad_spec = s.create_container(bad_spec).await;
    r.record_rule(
        "Containers.Create, spec not JSON",
        "bad-spec",
        Rule::MalformedSpec,
        bad_spec,
    );
    let bad_task = s.create_task("bad-spec", None).await;
    r.record_rule(
        "Tasks.Create, spec not JSON",
        "bad-spec",
        Rule::MalformedSpec,
        bad_task,
    );

    let get_task = |id: &str, exec_id: &str| GetRequest {
        container_id: id.into(),
        exec_id: exec_id.into(),
    };
    let unknown = s.tasks().get(s.req(get_task("no-such-task", ""))).await;
    r.record("Tasks.Get unknown container", "no-such-task", unknown);
    let no_task = s.tasks().get(s.req(get_task("c1", ""))).await;
    r.record("Tasks.Get, container without a task", "c1", no_task);
    let unknown = s.create_task("no-such-task", None).await;
    r.record("Tasks.Create unknown container", "no-such-task", unknown);
    let unknown = s.start("no-such-task", "").await;
    r.record("Tasks.Start unknown", "no-such-task", unknown);
    let unknown = s.kill("no-such-task", SIGKILL).await;
    r.record("Tasks.Kill unknown", "no-such-task", unknown);
    let unknown = s.delete_task("no-such-task").await;
    r.record("Tasks.Delete unknown", "no-such-task", unknown);

    r.record("Tasks.Create", "c1", s.create_task("c1", None).await);
    r.record(
        "Tasks.Create duplicate",
        "c1",
        s.create_task("c1", None).await,
    );
    r.record("Tasks.Start", "c1", s.start("c1", "").await);
    r.record("Tasks.Start again", "c1", s.start("c1", "").await);
    r.record("Tasks.Delete running", "c1", s.delete_task("c1").await);
    let bad_exec = s.exec("c1", "a/b", &["/bin/true"]).await;
    r.record("Tasks.Exec invalid exec id", "a/b", bad_exec);
    let exec = s.exec("c1", "e1", &["/bin/sleep", "1000"]).await;
    r.record("Tasks.Exec", "e1", exec);
    let again = s.exec("c1", "e1", &["/bin/true"]).await;
    r.record("Tasks.Exec duplicate exec id", "e1", again);
    let exec = s.exec("no-such-task", "e2", &["/bin/true"]).await;
    r.record("Tasks.Exec unknown task", "no-such-task", exec);
    let unknown = s.tasks().get(s.req(get_task("c1", "no-such-exec"))).await;
    r.record("Tasks.Get unknown exec", "no-such-exec", unknown);
    let delete_ns = DeleteNamespaceRequest { name: ns.clone() };
    let busy = s.namespaces().delete(s.req(delete_ns)).await;
    r.record("Namespaces.Delete not empty", &ns, busy);
    let unknown = s.delete_container("no-such-container").await;
    r.record("Containers.Delete unknown", "no-such-container", unknown);

    r.record("Tasks.Kill", "c1", s.kill("c1", SIGKILL).await);
    r.record_value("Tasks.Wait: exit status", "c1", s.wait("c1").await);
    r.record_value("Tasks.Delete: exit status", "c1", s.delete_task("c1").await);
    let pause = PauseTaskRequest {
        container_id: "c1".into(),
    };
    let gone = s.tasks().pause(s.req(pause)).await;
    r.record("Tasks.Pause, task deleted", "c1", gone);
    for id in ["c1", "bad-spec"] {
        let _ = s.delete_container(id).await;
    }
    Ok(r)
}

/// The same bad input to containerd 1.6 and keel-containerd: the same codes, and
/// keel-containerd's messages name the object.
#[tokio::test(flavor = "current_thread")]
async fn bad_input_gets_containerds_codes_and_names_the_object() -> Result<()> {
    require_root!();
    let mut runs = Vec::new();
    for supervisor in Supervisor::ALL {
        let ctrd = match supervisor.start(Stack::KeelShim.environment()?)? {
            Peer::Ready(ctrd) => ctrd,
            Peer::Unavailable(why) => {
                keel_integration_tests::skip::skip(module_path!(), &why);
                return Ok(());
            }
        };
        let s = Session::connect(&ctrd).await?;
        let refusals = bad_input(&s).await.with_context(|| {
            format!("on {}; its log:\n{}", supervisor.name(), ctrd.problems(30))
        })?;
        runs.push(refusals);
    }
    let [reference, keel] = runs.as_slice() else {
        bail!("expected two runs");
    };
    let mut problems = Vec::new();
    // The malformed spec is refused by the first call that does not take it.
    let mut spec_refused = false;
    for (theirs, ours) in reference.0.iter().zip(&keel.0) {
        let compared = |r: &Refusal| (r.code, (r.code == Code::Ok).then(|| r.message.clone()));
        let wrong = match ours.rule {
            Rule::Containerd => (compared(theirs) != compared(ours))
                .then(|| format!("containerd gives {:?} ({:?})", theirs.code, theirs.message)),
            Rule::Code(code) => (ours.code != code).then(|| format!("{code:?} expected")),
            Rule::MalformedSpec if spec_refused || ours.code == Code::Ok => None,
            Rule::MalformedSpec => {
                spec_refused = true;
                (ours.code != Code::InvalidArgument)
                    .then(|| "InvalidArgument expected (a spec that is not JSON)".to_string())
            }
        };
        if let Some(why) = wrong {
            problems.push(format!(
                "{}: keel-containerd gives {:?} ({:?}); {why}",
                ours.call, ours.code, ours.message
            ));
        } else if ours.code != Code::Ok && !ours.message.contains(&ours.object) {
            problems.push(format!(
                "{}: keel-containerd's message {:?} does not name {:?} (containerd: {:?})",
                ours.call, ours.message, ours.object, theirs.message
            ));
        }
    }
    if !spec_refused {
        problems
            .push("a spec that is not JSON was taken by Containers.Create and Tasks.Create".into());
    }
    for (name, run) in [("containerd", reference), ("keel-containerd", keel)] {
        println!("{name}:");
        for r in &run.0 {
            println!("  {:<42} {:?}: {}", r.call, r.code, r.message);
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
