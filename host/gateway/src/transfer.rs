//! Sending one module to one device: chunks within a flow-control window,
//! resumption from the device's acknowledged offset, then the commit.

use std::sync::Arc;

use wasmbed_protocol::{DeployChunk, DeployStart, DeployState, DeploymentId, Downlink};

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `DeployStart` sent; waiting for the device to accept.
    Announced,
    /// Chunks flowing.
    Sending,
    /// `DeployCommit` sent; waiting for the device to install.
    Committed,
}

/// The gateway's side of one module transfer.
#[derive(Debug)]
pub struct Transfer {
    start: DeployStart,
    module: Arc<[u8]>,
    /// Bytes the device confirmed holding.
    acked: usize,
    /// Next byte to send.
    next: usize,
    /// Most bytes sent but not yet acknowledged.
    window: usize,
    phase: Phase,
}

impl Transfer {
    /// A transfer of `module` announced by `start`, with `window` bytes in
    /// flight at most (at least one chunk).
    pub fn new(start: DeployStart, module: Arc<[u8]>, window: usize) -> Transfer {
        Transfer {
            window: window.max(usize::from(start.chunk_size)),
            start,
            module,
            acked: 0,
            next: 0,
            phase: Phase::Announced,
        }
    }

    pub fn id(&self) -> DeploymentId {
        self.start.deployment
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn bytes_acked(&self) -> usize {
        self.acked
    }

    /// The announcement; sent again after every reconnect.
    pub fn announcement(&self) -> Downlink<'static> {
        Downlink::DeployStart(self.start.clone())
    }

    /// Applies a status report. Returns `true` when the transfer is over
    /// (installed or failed) and can be dropped.
    pub fn on_status(&mut self, state: DeployState) -> bool {
        match state {
            DeployState::Accepted { resume_offset } => {
                let resume = (resume_offset as usize).min(self.module.len());
                self.acked = resume;
                self.next = resume;
                self.phase = Phase::Sending;
                false
            }
            DeployState::Progress { bytes_held } => {
                let held = (bytes_held as usize).min(self.module.len());
                self.acked = self.acked.max(held);
                self.next = self.next.max(self.acked);
                false
            }
            DeployState::Installed
            | DeployState::Running
            | DeployState::Stopped
            | DeployState::Removed
            | DeployState::Failed { .. } => true,
        }
    }

    /// Offers every message the window allows to `send`, oldest first,
    /// until `send` refuses one (returns `false`; it is offered again next
    /// time). Returns how many were sent.
    pub fn pump(&mut self, mut send: impl FnMut(Downlink<'_>) -> bool) -> usize {
        let mut sent = 0;
        while self.phase == Phase::Sending {
            if self.next >= self.module.len() {
                if self.acked < self.module.len() {
                    break;
                }
                let commit = wasmbed_protocol::DeployCommit {
                    deployment: self.start.deployment,
                };
                if send(Downlink::DeployCommit(commit)) {
                    self.phase = Phase::Committed;
                    sent += 1;
                }
                break;
            }
            if self.next - self.acked >= self.window {
                break;
            }
            let end = (self.next + usize::from(self.start.chunk_size)).min(self.module.len());
            let Ok(offset) = u32::try_from(self.next) else {
                break;
            };
            let chunk = DeployChunk {
                deployment: self.start.deployment,
                offset,
                data: &self.module[self.next..end],
            };
            if !send(Downlink::DeployChunk(chunk)) {
                break;
            }
            self.next = end;
            sent += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmbed_protocol::samples;

    fn transfer(len: usize, window: usize) -> Transfer {
        let mut start = samples::deploy_start();
        start.chunk_size = 100;
        start.module_size = u32::try_from(len).expect("small");
        Transfer::new(start, samples::chunk_data(len).into(), window)
    }

    fn offsets(t: &mut Transfer) -> Vec<u32> {
        let mut out = Vec::new();
        t.pump(|message| {
            match message {
                Downlink::DeployChunk(chunk) => out.push(chunk.offset),
                Downlink::DeployCommit(_) => out.push(u32::MAX),
                other => panic!("unexpected {other:?}"),
            }
            true
        });
        out
    }

    #[test]
    fn nothing_is_sent_before_the_device_accepts() {
        let mut t = transfer(1000, 300);
        assert_eq!(offsets(&mut t), Vec::<u32>::new());
    }

    #[test]
    fn chunks_stay_within_the_window_and_end_with_a_commit() {
        let mut t = transfer(450, 200);
        t.on_status(DeployState::Accepted { resume_offset: 0 });
        assert_eq!(offsets(&mut t), vec![0, 100]);
        t.on_status(DeployState::Progress { bytes_held: 100 });
        assert_eq!(offsets(&mut t), vec![200]);
        t.on_status(DeployState::Progress { bytes_held: 300 });
        assert_eq!(offsets(&mut t), vec![300, 400]);
        assert_eq!(
            t.phase(),
            Phase::Sending,
            "no commit before everything is acknowledged"
        );
        t.on_status(DeployState::Progress { bytes_held: 450 });
        assert_eq!(offsets(&mut t), vec![u32::MAX]);
        assert_eq!(t.phase(), Phase::Committed);
        assert!(t.on_status(DeployState::Installed));
    }

    #[test]
    fn a_refused_message_is_offered_again() {
        let mut t = transfer(300, 10_000);
        t.on_status(DeployState::Accepted { resume_offset: 0 });
        let mut first = Vec::new();
        t.pump(|message| {
            if let Downlink::DeployChunk(chunk) = message {
                first.push(chunk.offset);
            }
            first.len() < 2
        });
        assert_eq!(first, vec![0, 100]);
        assert_eq!(offsets(&mut t), vec![100, 200]);
    }

    #[test]
    fn a_resumed_transfer_starts_at_the_device_offset() {
        let mut t = transfer(1000, 10_000);
        t.on_status(DeployState::Accepted { resume_offset: 700 });
        assert_eq!(offsets(&mut t), vec![700, 800, 900]);
        assert_eq!(t.bytes_acked(), 700);
    }

    #[test]
    fn a_device_claiming_more_than_the_module_is_clamped() {
        let mut t = transfer(250, 10_000);
        t.on_status(DeployState::Accepted {
            resume_offset: 9_999,
        });
        t.on_status(DeployState::Progress { bytes_held: 9_999 });
        assert_eq!(offsets(&mut t), vec![u32::MAX]);
    }
}
