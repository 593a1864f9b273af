//! Live state of devices: who is connected, and what their last heartbeat
//! said. Kept in memory because heartbeats are frequent; the store keeps
//! what must survive a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::sync::mpsc;
use wasmbed_protocol::{AppStatus, DeviceId};

/// Whether a device can be reached: the HTTP contract's enum.
pub use wasmbed_gateway_api::Presence;

/// What a device's connection task is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Deployments changed: compare the store with the device and act.
    Sync,
    /// Say goodbye and close.
    Close,
}

/// What the gateway knows live about one device.
#[derive(Debug, Clone)]
pub struct LiveDevice {
    pub presence: Presence,
    pub peer: Option<SocketAddr>,
    pub last_heartbeat_ms: Option<u64>,
    pub uptime_ms: Option<u64>,
    pub free_memory: Option<u32>,
    pub apps: Vec<AppStatus>,
    /// Identifies the connection, so an old connection's cleanup does not
    /// unregister a newer one.
    connection: u64,
    commands: Option<mpsc::Sender<Command>>,
}

/// Every device seen since the gateway started.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: Mutex<HashMap<DeviceId, LiveDevice>>,
}

impl Fleet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, LiveDevice>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session of `id`, replacing (and closing) an older one.
    pub fn connect(
        &self,
        id: DeviceId,
        connection: u64,
        peer: SocketAddr,
        commands: mpsc::Sender<Command>,
    ) {
        let mut devices = self.lock();
        let entry = devices.entry(id).or_insert_with(|| LiveDevice {
            presence: Presence::Disconnected,
            peer: None,
            last_heartbeat_ms: None,
            uptime_ms: None,
            free_memory: None,
            apps: Vec::new(),
            connection: 0,
            commands: None,
        });
        if let Some(old) = entry.commands.take() {
            let _ = old.try_send(Command::Close);
        }
        entry.presence = Presence::Connected;
        entry.peer = Some(peer);
        entry.connection = connection;
        entry.commands = Some(commands);
    }

    /// Marks the session `connection` of `id` as over, if it is the current one.
    pub fn disconnect(&self, id: DeviceId, connection: u64, presence: Presence) {
        if let Some(device) = self.lock().get_mut(&id) {
            if device.connection == connection {
                device.presence = presence;
                device.commands = None;
            }
        }
    }

    /// Records a heartbeat; returns the apps whose state differs from the
    /// previous heartbeat's (all of them for the first).
    pub fn heartbeat(
        &self,
        id: DeviceId,
        at_ms: u64,
        uptime_ms: u64,
        free: u32,
        apps: &[AppStatus],
    ) -> Vec<AppStatus> {
        let mut devices = self.lock();
        let Some(device) = devices.get_mut(&id) else {
            return Vec::new();
        };
        device.last_heartbeat_ms = Some(at_ms);
        device.uptime_ms = Some(uptime_ms);
        device.free_memory = Some(free);
        let changed = apps
            .iter()
            .filter(|app| !device.apps.contains(app))
            .cloned()
            .collect();
        device.apps.clear();
        device.apps.extend_from_slice(apps);
        changed
    }

    /// Forgets a device (it was revoked) and closes its session, if any.
    pub fn remove(&self, id: DeviceId) {
        if let Some(device) = self.lock().remove(&id) {
            if let Some(commands) = device.commands {
                let _ = commands.try_send(Command::Close);
            }
        }
    }

    /// Asks the device's connection, if any, to act. Returns whether the
    /// device is connected.
    pub fn notify(&self, id: DeviceId, command: Command) -> bool {
        match self.lock().get(&id).and_then(|d| d.commands.clone()) {
            // A full queue already holds a Sync, which covers this one.
            Some(commands) => {
                let _ = commands.try_send(command);
                true
            }
            None => false,
        }
    }

    /// Whether `id` has a session with this gateway now.
    pub fn is_connected(&self, id: DeviceId) -> bool {
        self.lock()
            .get(&id)
            .is_some_and(|d| d.presence == Presence::Connected)
    }

    pub fn get(&self, id: DeviceId) -> Option<LiveDevice> {
        self.lock().get(&id).cloned()
    }

    pub fn connected_count(&self) -> usize {
        self.lock()
            .values()
            .filter(|d| d.presence == Presence::Connected)
            .count()
    }
}
