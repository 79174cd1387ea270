//! The `containerd-client` crate (containerd's maintainers' Rust bindings of containerd's gRPC
//! API) as a second client of keel-containerd, independent of `ctr`: over the unix socket it
//! makes a namespace, a container (an OCI spec for a busybox rootfs, our shim's runtime) and a
//! task with FIFOs for stdio, starts it, waits for it, reads its output and exit status,
//! deletes it, and watches the task events it caused with `Events.Subscribe` filtered in
//! containerd's syntax. Bad input: `supervisor_client_bad_input.rs`.

mod client_session;

use anyhow::{bail, ensure, Context, Result};
use client_session::{Session, Stdio, SPEC_TYPE, WAIT};
use containerd_client::services::v1::{
    events_client::EventsClient, CreateNamespaceRequest, DeleteNamespaceRequest,
    GetContainerRequest, GetNamespaceRequest, GetRequest, Namespace, SubscribeRequest,
};
use keel_integration_tests::peers::keel_containerd::KeelContainerd;
use keel_integration_tests::peers::keel_shim::KEEL_SHIM_RUNTIME;
use keel_integration_tests::{require_peer, require_root};

/// The run of one container, start to end, through containerd-client: what it printed, its
/// exit status as Wait, Get and Delete gave it, the task events seen in the namespace.
#[tokio::test(flavor = "current_thread")]
async fn runs_a_container_with_containerd_client() -> Result<()> {
    require_root!();
    let ctrd = require_peer!(KeelContainerd::start());
    let s = Session::connect(&ctrd).await?;
    let ns = s.namespace.clone();
    let request = CreateNamespaceRequest {
        namespace: Some(Namespace {
            name: ns.clone(),
            labels: [("owner".to_string(), "client-test".to_string())].into(),
        }),
    };
    // As ctr does, Namespaces calls carry a namespace header too (containerd publishes the
    // namespace's events in it).
    s.namespaces()
        .create(s.req(request))
        .await
        .context("Namespaces.Create")?;
    let got = s
        .namespaces()
        .get(s.req(GetNamespaceRequest { name: ns.clone() }))
        .await
        .context("Namespaces.Get")?
        .into_inner()
        .namespace
        .context("Namespaces.Get has no namespace")?;
    ensure!(
        got.labels.get("owner").map(String::as_str) == Some("client-test"),
        "the namespace's labels came back as {:?}",
        got.labels
    );

    let filter = format!("namespace=={ns},topic~=\"^/tasks/\"");
    let mut events = EventsClient::new(s.channel.clone())
        .subscribe(SubscribeRequest {
            filters: vec![filter],
        })
        .await
        .context("Events.Subscribe")?
        .into_inner();

    let id = "client-run";
    let container = s.container(
        id,
        &["/bin/sh", "-c", "echo hi; echo err >&2; exit 7"],
        None,
    )?;
    s.create_container(container)
        .await
        .context("Containers.Create")?;
    let got = s
        .containers()
        .get(s.req(GetContainerRequest { id: id.into() }))
        .await
        .context("Containers.Get")?
        .into_inner()
        .container
        .context("Containers.Get has no container")?;
    let runtime = got.runtime.map(|r| r.name).unwrap_or_default();
    ensure!(
        runtime == KEEL_SHIM_RUNTIME,
        "runtime came back as {runtime:?}"
    );
    ensure!(
        got.spec.as_ref().is_some_and(|a| a.type_url == SPEC_TYPE),
        "the spec came back as {:?}",
        got.spec.map(|a| a.type_url)
    );

    let stdio = Stdio::make(&s.fifos, id)?;
    let pid = s
        .create_task(id, Some(&stdio))
        .await
        .context("Tasks.Create")?;
    ensure!(pid > 0, "Tasks.Create gave pid {pid}");
    s.start(id, "").await.context("Tasks.Start")?;
    let status = s.wait(id).await.context("Tasks.Wait")?;
    let process = s
        .tasks()
        .get(s.req(GetRequest {
            container_id: id.into(),
            exec_id: String::new(),
        }))
        .await
        .context("Tasks.Get")?
        .into_inner()
        .process
        .context("Tasks.Get has no process")?;
    let deleted = s.delete_task(id).await.context("Tasks.Delete")?;
    s.delete_container(id).await.context("Containers.Delete")?;
    let (stdout, stderr) = (stdio.stdout.read(), stdio.stderr.read());

    // containerd.v1.types.Status: STOPPED is 3.
    let seen = (status, process.status, process.exit_status, deleted);
    ensure!(
        seen == (7, 3, 7, 7),
        "exit status 7 expected from Wait, Get (status STOPPED = 3) and Delete; got {seen:?}"
    );
    ensure!(
        (stdout.as_str(), stderr.as_str()) == ("hi\n", "err\n"),
        "stdout {stdout:?}, stderr {stderr:?}"
    );

    let mut topics = Vec::new();
    while !topics.iter().any(|t| t == "/tasks/delete") {
        let next = tokio::time::timeout(WAIT, events.message()).await;
        let Ok(Ok(Some(envelope))) = next else {
            bail!("the event stream ended or stalled after {topics:?}: {next:?}");
        };
        ensure!(
            envelope.namespace == ns,
            "an event of namespace {:?} passed the filter",
            envelope.namespace
        );
        if envelope.topic == "/tasks/exit" {
            use containerd_client::events::TaskExit;
            use prost::Message;
            let any = envelope.event.context("/tasks/exit without its event")?;
            let exit = TaskExit::decode(any.value.as_slice())?;
            ensure!(
                (exit.container_id.as_str(), exit.exit_status) == (id, 7),
                "{exit:?}"
            );
        }
        topics.push(envelope.topic);
    }
    ensure!(
        topics
            == [
                "/tasks/create",
                "/tasks/start",
                "/tasks/exit",
                "/tasks/delete"
            ],
        "task events {topics:?}"
    );

    let request = DeleteNamespaceRequest { name: ns.clone() };
    s.namespaces()
        .delete(s.req(request))
        .await
        .context("Namespaces.Delete")?;
    Ok(())
}
