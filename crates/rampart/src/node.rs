//! This node's identity and lifecycle: its id (a field of the serve task's log lines and the
//! `rampart_node_info` metric) and whether it is draining — unready for the load balancer,
//! accepting no new connections, telling its WebSocket clients to reconnect elsewhere.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rampart_core::limits::NODE_ID_CHARS_MAX;

/// A validated node id: 1 to `NODE_ID_CHARS_MAX` characters of `[a-z0-9._-]`, starting with a
/// letter or digit, so it is safe as a log field and a metric label value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid_start = text.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid_rest = text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
        if text.len() > NODE_ID_CHARS_MAX || !valid_start || !valid_rest {
            return Err(format!(
                "`{}` is not a node id: 1 to {NODE_ID_CHARS_MAX} characters of a-z, 0-9, `.`, `-`, `_`, \
                 starting with a letter or digit",
                text.chars().take(NODE_ID_CHARS_MAX + 1).collect::<String>()
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The default id: the host name and the listening port (`chat-1-8443`), which is stable across
    /// restarts and tells apart nodes sharing a host. Without a usable host name, `node-` and 8
    /// random hex digits.
    pub fn default_for(hostname: Option<&str>, port: u16) -> Self {
        let suffix = format!("-{port}");
        let host: String = hostname
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .take(NODE_ID_CHARS_MAX - suffix.len())
            .collect();
        let host = if host.is_empty() {
            let random = uuid::Uuid::new_v4().simple().to_string();
            format!("node-{}", &random[..8])
        } else {
            host
        };
        Self(format!("{host}{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The machine's host name, as the kernel has it (Linux), if it can be read.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// The node's id and whether it drains, shared by the readiness check, the gateway and `serve`.
#[derive(Debug)]
pub struct NodeState {
    pub id: NodeId,
    draining: AtomicBool,
    /// The cluster bus's state, on a node of a cluster.
    bus: OnceLock<Arc<crate::cluster::BusStats>>,
}

impl NodeState {
    pub fn new(id: NodeId) -> Arc<Self> {
        Arc::new(Self { id, draining: AtomicBool::new(false), bus: OnceLock::new() })
    }

    /// Records that this node is one of a cluster, talking on this bus (once).
    pub fn set_bus(&self, bus: Arc<crate::cluster::BusStats>) {
        let _ = self.bus.set(bus);
    }

    /// The bus's state, on a node of a cluster.
    pub fn bus(&self) -> Option<&crate::cluster::BusStats> {
        self.bus.get().map(Arc::as_ref)
    }

    /// Marks the node draining; true the first time.
    pub fn start_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::AcqRel)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        for good in ["a", "node-1", "chat.example.com-8443", "0_x", &"a".repeat(NODE_ID_CHARS_MAX)] {
            assert_eq!(NodeId::parse(good).expect(good).as_str(), good);
        }
        for bad in ["", "-a", "Node", "a b", "a\"b", "a}b", "ünï", &"a".repeat(NODE_ID_CHARS_MAX + 1)] {
            assert!(NodeId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_id_is_the_host_and_port_and_always_valid() {
        assert_eq!(NodeId::default_for(Some("Chat-1.Example.com\n"), 8443).as_str(), "chat-1.example.com-8443");
        assert_eq!(NodeId::default_for(Some("_weird host!"), 1).as_str(), "weird-host--1");
        let long = "h".repeat(200);
        let id = NodeId::default_for(Some(&long), 65535);
        assert_eq!(id.as_str().len(), NODE_ID_CHARS_MAX);
        for id in [id, NodeId::default_for(None, 8443), NodeId::default_for(Some("___"), 8443)] {
            NodeId::parse(id.as_str()).expect("a default id is valid");
        }
        assert!(NodeId::default_for(None, 8443).as_str().starts_with("node-"));
    }

    #[test]
    fn draining_starts_once() {
        let node = NodeState::new(NodeId::parse("n1").expect("id"));
        assert!(!node.is_draining());
        assert!(node.start_draining());
        assert!(!node.start_draining());
        assert!(node.is_draining());
    }
}
