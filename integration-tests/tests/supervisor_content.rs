//! The content service (`containerd.services.content.v1.Content`) of keel-containerd.
//!
//! With Debian's `ctr` (containerd 1.6's own client): the same transcript on a real containerd
//! 1.6 and on keel-containerd (each a daemon of its own, in its own temp dir and namespace),
//! compared step by step: `content ingest` (plain, with the expected digest and size, a wrong
//! expected digest), `ls` (plain, `-q`, filtered), `get`, `label`, `active` while an ingest is
//! half done, `rm`, and the errors for unknown digests.
//!
//! Through the gRPC API (containerd-client's tonic client) on keel-containerd: a write resumed
//! on a new stream, bad offsets, a truncated write, a wrong digest, a ref locked by another
//! writer, Read ranges, and namespaces sharing a blob.

use std::io::Write as _;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    AbortRequest, InfoRequest, ReadContentRequest, StatusRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use containerd_client::tonic::codegen::tokio_stream::{self, Stream};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::keel_containerd::KeelContainerd;
use keel_integration_tests::peers::outcome::Outcome;
use keel_integration_tests::{require_peer, require_root};
use sha2::{Digest, Sha256};

fn digest_of(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// One step: what was run, its status, what it printed (stdout, then stderr's gist).
type Step = (String, i32, String);

/// Keeps what must match between daemons: the status, stdout with runs of blanks made one
/// space, and for a failure the error's last part (the wording containerd's errdefs give).
fn step(what: &str, out: &Outcome) -> Step {
    let stdout = out
        .stdout
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(sorted_labels)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let error = if out.status == 0 {
        String::new()
    } else {
        out.stderr
            .trim()
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    (what.to_string(), out.status, format!("{stdout}|{error}"))
}

/// ctr prints labels `k=v,x=y` in Go's random map order.
fn sorted_labels(word: &str) -> String {
    let mut parts: Vec<&str> = word.split(',').collect();
    parts.sort_unstable();
    parts.join(",")
}

/// `ctr content ingest <args>` with `data` on its stdin.
fn ingest(ctrd: &Containerd, args: &[&str], data: &[u8]) -> Result<Outcome> {
    let mut child = ingest_child(ctrd, args)?;
    child
        .stdin
        .take()
        .context("ctr's stdin")?
        .write_all(data)
        .context("writing to ctr")?;
    let out = child.wait_with_output().context("waiting for ctr")?;
    Ok(Outcome::from_output(&out))
}

fn ingest_child(ctrd: &Containerd, args: &[&str]) -> Result<Child> {
    let mut cmd = ctrd.ctr_command_here();
    cmd.args(["content", "ingest"]).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().context("spawning ctr content ingest")
}

/// The transcript both daemons must give.
fn transcript(ctrd: &Containerd) -> Result<Vec<Step>> {
    let mut t = Vec::new();
    let data = b"hello content\n";
    let digest = digest_of(data);
    let other = digest_of(b"something else");
    let ctr = |t: &mut Vec<Step>, args: &[&str]| -> Result<()> {
        let out = ctrd.ctr(args)?;
        t.push(step(&format!("ctr {}", args.join(" ")), &out));
        Ok(())
    };
    t.push(step("ingest r1", &ingest(ctrd, &["r1"], data)?));
    ctr(&mut t, &["content", "ls", "-q"])?;
    ctr(&mut t, &["content", "ls"])?;
    ctr(&mut t, &["content", "get", &digest])?;
    ctr(&mut t, &["content", "label", &digest, "k=v", "x=y"])?;
    ctr(&mut t, &["content", "ls", "-q", "labels.k==v"])?;
    ctr(&mut t, &["content", "ls", "-q", "labels.k==nope"])?;
    ctr(
        &mut t,
        &["content", "ls", "-q", &format!("digest=={digest}")],
    )?;
    // containerd's adaptor has `size` but matches nothing on it (a TODO there).
    ctr(&mut t, &["content", "ls", "-q", "size==14"])?;
    ctr(&mut t, &["content", "label", &digest, "k="])?;
    ctr(&mut t, &["content", "ls", "-q", "labels.k"])?;
    ctr(&mut t, &["content", "get", &other])?;
    ctr(&mut t, &["content", "label", &other, "k=v"])?;
    ctr(&mut t, &["content", "get", "sha256:nothex"])?;
    // Ingesting what is already there succeeds (ctr takes AlreadyExists as done).
    t.push(step("ingest r1 again", &ingest(ctrd, &["r1"], data)?));
    let wrong = ["--expected-digest", other.as_str(), "bad"];
    t.push(step("ingest, wrong digest", &ingest(ctrd, &wrong, data)?));
    ctr(&mut t, &["content", "active"])?;
    ctr(&mut t, &["content", "ls", "-q"])?;
    let more = b"more content\n";
    let (more_digest, size) = (digest_of(more), more.len().to_string());
    let expected = [
        "--expected-digest",
        &more_digest,
        "--expected-size",
        &size,
        "r9",
    ];
    t.push(step("ingest, expected", &ingest(ctrd, &expected, more)?));
    half_done(ctrd, &mut t)?;
    ctr(
        &mut t,
        &["content", "ls", "-q", &format!("digest=={more_digest}")],
    )?;
    // What follows a removal is left out: containerd's collector runs after it and removes
    // whatever nothing references (all of this content), at a moment of its choosing.
    ctr(&mut t, &["content", "rm", &digest])?;
    ctr(&mut t, &["content", "get", &digest])?;
    Ok(t)
}

/// An ingest whose client has sent part of the data and waits: `content active` lists it.
fn half_done(ctrd: &Containerd, t: &mut Vec<Step>) -> Result<()> {
    let mut child = ingest_child(ctrd, &["half"])?;
    let mut stdin = child.stdin.take().context("ctr's stdin")?;
    stdin.write_all(b"0123456789").context("writing to ctr")?;
    stdin.flush().context("flushing")?;
    let mut active = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let out = ctrd.ctr(&["content", "active"])?;
        active = out.stdout.clone();
        // ctr holds back what it reads until its buffer fills or the input ends.
        if active.contains("half") {
            break;
        }
    }
    // containerd lists ingests in the order of its directory's entries.
    let mut refs: Vec<String> = active
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    refs.sort();
    t.push(("content active, half done".into(), 0, refs.join("\n")));
    stdin.write_all(b"abc").context("writing to ctr")?;
    drop(stdin);
    let out = Outcome::from_output(&child.wait_with_output().context("waiting for ctr")?);
    t.push(step("ingest half, finished", &out));
    Ok(())
}

/// Both collect garbage once, 100 ms after they start (containerd's scheduler startup_delay):
/// content `ctr content ingest` wrote before that (no lease holds it) is gone, content written
/// after it stays until a later collection. Waits for that first one.
fn first_collection(ctrd: &Containerd, name: &str) -> Result<()> {
    let collected =
        || std::fs::read_to_string(ctrd.log()).is_ok_and(|log| log.contains("garbage collected"));
    ensure!(
        keel_integration_tests::host::wait_until(Duration::from_secs(10), collected),
        "{name} logged no first garbage collection within 10 s"
    );
    Ok(())
}

#[test]
fn ctr_content_same_as_containerd() -> Result<()> {
    require_root!();
    let reference = require_peer!(Containerd::start());
    first_collection(&reference, "containerd")?;
    let want = transcript(&reference)?;
    drop(reference);
    let keel = require_peer!(KeelContainerd::start());
    first_collection(&keel, "keel-containerd")?;
    let got = transcript(&keel)?;
    for (w, g) in want.iter().zip(&got) {
        ensure!(
            w == g,
            "{:?}: containerd gave {w:?}, keel-containerd {g:?}\ncontainerd: {want:#?}\nkeel: {got:#?}",
            w.0
        );
    }
    ensure!(want.len() == got.len(), "different lengths");
    // The transcript is not trivially equal: it saw the content, the labels and the errors.
    ensure!(
        want.iter().any(|s| s.2.contains("k=v,x=y"))
            && want
                .iter()
                .any(|s| s.0.contains("half done") && s.2.contains("half"))
            && want.iter().any(|s| s.1 != 0),
        "the transcript missed the labels, the half-done ingest or the errors: {want:#?}"
    );
    Ok(())
}

/// A client of keel-containerd's content service in the fixture's namespace.
struct Client {
    content: ContentClient<Channel>,
    namespace: String,
}

impl Client {
    async fn connect(ctrd: &Containerd) -> Result<Self> {
        let channel = containerd_client::connect(ctrd.address())
            .await
            .with_context(|| format!("connecting to {}", ctrd.address().display()))?;
        Ok(Self {
            content: ContentClient::new(channel),
            namespace: ctrd.namespace().to_string(),
        })
    }

    fn req<T>(&self, message: T) -> Request<T> {
        self.req_in(&self.namespace, message)
    }

    fn req_in<T>(&self, namespace: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    /// One Write stream with `messages`: the answers, or the status it failed with.
    async fn write_in(
        &mut self,
        namespace: &str,
        messages: Vec<WriteContentRequest>,
    ) -> std::result::Result<Vec<WriteContentResponse>, Status> {
        let request = self.req_in(namespace, tokio_stream::iter(messages));
        let mut stream = self.content.write(request).await?.into_inner();
        let mut answers = Vec::new();
        while let Some(answer) = stream.message().await? {
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn write(
        &mut self,
        messages: Vec<WriteContentRequest>,
    ) -> std::result::Result<Vec<WriteContentResponse>, Status> {
        let ns = self.namespace.clone();
        self.write_in(&ns, messages).await
    }

    async fn read(&mut self, digest: &str, offset: i64, size: i64) -> Result<Vec<u8>, Status> {
        let request = self.req(ReadContentRequest {
            digest: digest.into(),
            offset,
            size,
        });
        let mut stream = self.content.read(request).await?.into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }
}

fn msg(action: WriteAction, reference: &str, offset: i64, data: &[u8]) -> WriteContentRequest {
    WriteContentRequest {
        action: action as i32,
        r#ref: reference.into(),
        offset,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn commit(reference: &str, offset: i64, total: i64, expected: &str) -> WriteContentRequest {
    WriteContentRequest {
        total,
        expected: expected.into(),
        ..msg(WriteAction::Commit, reference, offset, b"")
    }
}

fn code<T>(r: std::result::Result<T, Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

#[tokio::test(flavor = "current_thread")]
async fn write_resumes_and_refuses_bad_input() -> Result<()> {
    require_root!();
    let ctrd = require_peer!(KeelContainerd::start());
    // Content written here has no lease: the startup collection must be behind us.
    first_collection(&ctrd, "keel-containerd")?;
    let mut c = Client::connect(&ctrd).await?;
    let data = b"0123456789abcdef";
    let digest = digest_of(data);

    // A first stream writes half and goes away; a second one asks where it stands and resumes.
    let answers = c
        .write(vec![msg(WriteAction::Write, "w", 0, &data[..8])])
        .await?;
    ensure!(answers.last().map(|a| a.offset) == Some(8), "{answers:?}");
    let status = c
        .content
        .status(c.req(StatusRequest { r#ref: "w".into() }))
        .await?
        .into_inner()
        .status
        .context("no status")?;
    ensure!(status.offset == 8, "{status:?}");
    // Writing anywhere but where the ingest stands is OutOfRange, and changes nothing.
    let bad = c.write(vec![msg(WriteAction::Write, "w", 5, b"zz")]).await;
    ensure!(code(bad) == Some(Code::OutOfRange), "an offset behind");
    // A commit of the wrong size or digest is FailedPrecondition; nothing becomes visible.
    let short = c.write(vec![commit("w", 8, 16, "")]).await;
    ensure!(
        code(short) == Some(Code::FailedPrecondition),
        "a truncated write"
    );
    let wrong = c.write(vec![commit("w", 8, 8, &digest_of(b"other"))]).await;
    ensure!(
        code(wrong) == Some(Code::FailedPrecondition),
        "a wrong digest"
    );
    let info = c
        .content
        .info(c.req(InfoRequest {
            digest: digest_of(&data[..8]),
        }))
        .await;
    ensure!(
        code(info) == Some(Code::NotFound),
        "a failed commit left content"
    );
    let answers = c
        .write(vec![
            msg(WriteAction::Stat, "w", 0, b""),
            msg(WriteAction::Write, "w", 8, &data[8..]),
            commit("w", 16, 16, &digest),
        ])
        .await?;
    let last = answers.last().context("no answer")?;
    ensure!(last.digest == digest && last.offset == 16, "{answers:?}");
    ensure!(answers[0].offset == 8, "Stat said {:?}", answers[0]);
    ensure!(c.read(&digest, 0, 0).await? == data, "the blob reads back");
    ensure!(c.read(&digest, 10, 3).await? == b"abc", "a range");
    ensure!(c.read(&digest, -1, 100).await? == data, "containerd clamps");
    ensure!(
        code(c.read(&digest, 17, 0).await) == Some(Code::OutOfRange),
        "past the end"
    );
    ensure!(
        code(c.read(&digest_of(b"x"), 0, 0).await) == Some(Code::NotFound),
        "unknown"
    );
    let again = c
        .write(vec![
            msg(WriteAction::Write, "w2", 0, data),
            commit("w2", 16, 16, ""),
        ])
        .await;
    ensure!(
        code(again) == Some(Code::AlreadyExists),
        "committing existing content"
    );
    let expected = c.write(vec![commit("w3", 0, 16, &digest)]).await;
    ensure!(
        code(expected) == Some(Code::AlreadyExists),
        "an expected digest known here"
    );
    let no_ref = c.write(vec![msg(WriteAction::Stat, "", 0, b"")]).await;
    ensure!(code(no_ref) == Some(Code::InvalidArgument), "no ref");

    // Another namespace has no record; given the digest, its write only records the blob.
    let stat = c
        .write_in("content-other", vec![commit("s", 0, 16, &digest)])
        .await?;
    ensure!(
        stat.last().map(|a| a.digest.as_str()) == Some(digest.as_str()),
        "{stat:?}"
    );
    // The failed commit of w2 dropped its ingest (the blob was there), as containerd does.
    let gone = c
        .content
        .abort(c.req(AbortRequest { r#ref: "w2".into() }))
        .await;
    ensure!(code(gone) == Some(Code::NotFound), "w2 after its commit");
    c.write(vec![msg(WriteAction::Write, "w4", 0, b"partial")])
        .await?;
    c.content
        .abort(c.req(AbortRequest { r#ref: "w4".into() }))
        .await
        .context("aborting w4")?;
    let gone = c
        .content
        .abort(c.req(AbortRequest { r#ref: "w4".into() }))
        .await;
    ensure!(code(gone) == Some(Code::NotFound), "aborting twice");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_ref_held_by_a_writer_is_locked() -> Result<()> {
    require_root!();
    let ctrd = require_peer!(KeelContainerd::start());
    // Content written here has no lease: the startup collection must be behind us.
    first_collection(&ctrd, "keel-containerd")?;
    let mut c = Client::connect(&ctrd).await?;
    // The first writer sends one message and keeps its stream open until told.
    let (done, ended) = tokio::sync::oneshot::channel();
    let first = Held {
        first: Some(msg(WriteAction::Write, "held", 0, b"abc")),
        ended,
    };
    let mut held = c.content.write(c.req(first)).await?.into_inner();
    let answer = held.message().await?.context("no answer")?;
    ensure!(answer.offset == 3, "{answer:?}");
    let second = c.write(vec![msg(WriteAction::Stat, "held", 0, b"")]).await;
    match second {
        Err(s) if s.code() == Code::Unavailable && s.message().contains("locked") => {}
        other => bail!("a second writer of a held ref got {other:?}"),
    }
    let _ = done.send(());
    ensure!(held.message().await?.is_none(), "the held stream ends");
    // Once the first stream is gone the ref is free again.
    for _ in 0..50 {
        match c.write(vec![msg(WriteAction::Stat, "held", 0, b"")]).await {
            Ok(answers) => {
                ensure!(answers[0].offset == 3, "{answers:?}");
                return Ok(());
            }
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => bail!("{s:?}"),
        }
    }
    bail!("the ref stayed locked after its writer left")
}

/// A request stream of one message that ends when `ended` fires.
struct Held {
    first: Option<WriteContentRequest>,
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl Stream for Held {
    type Item = WriteContentRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        Pin::new(&mut self.ended).poll(cx).map(|_| None)
    }
}
