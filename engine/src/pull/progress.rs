//! What a pull reports while it runs: Docker's progress messages (`Pulling fs layer`,
//! `Downloading`, `Extracting`, ...), one per change, for the engine to stream as JSON lines.

use tokio::sync::mpsc::UnboundedSender;

/// One progress message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The pull of `name` began (Docker: "Pulling from <repository>").
    Resolving { name: String },
    /// A layer, by Docker's short id (the first 12 hex digits of its digest), changed state.
    Layer { id: String, status: LayerStatus },
    /// The digest of what the image name now points at.
    Digest(String),
    /// The last line: whether anything new was stored.
    Done { name: String, updated: bool },
}

/// Where one layer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerStatus {
    PullingFsLayer,
    AlreadyExists,
    Downloading { current: u64, total: u64 },
    DownloadComplete,
    Extracting,
    PullComplete,
}

impl LayerStatus {
    /// Docker's wording.
    pub fn text(&self) -> &'static str {
        match self {
            LayerStatus::PullingFsLayer => "Pulling fs layer",
            LayerStatus::AlreadyExists => "Already exists",
            LayerStatus::Downloading { .. } => "Downloading",
            LayerStatus::DownloadComplete => "Download complete",
            LayerStatus::Extracting => "Extracting",
            LayerStatus::PullComplete => "Pull complete",
        }
    }
}

/// Docker's short id of a digest: its first 12 hex digits.
pub fn short_id(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

/// Where progress goes: nowhere, or a channel the caller reads.
#[derive(Debug, Clone, Default)]
pub struct Reporter(Option<UnboundedSender<Progress>>);

impl Reporter {
    /// Reports into `sender`.
    pub fn new(sender: UnboundedSender<Progress>) -> Self {
        Self(Some(sender))
    }

    /// Reports `progress`; a reader gone away does not stop the pull.
    pub fn send(&self, progress: Progress) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(progress);
        }
    }

    /// Reports a layer's new state.
    pub fn layer(&self, digest: &str, status: LayerStatus) {
        self.send(Progress::Layer {
            id: short_id(digest),
            status,
        });
    }
}
