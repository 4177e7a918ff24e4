//! A connection's mailbox: the one place its writer waits on. The hub queues events and
//! ephemeral frames in it (bounded: a full mailbox marks the connection as lagging instead of
//! growing), the connection's reader queues what the client sent, and anyone may raise a signal
//! (session revoked, recheck it, node draining, heartbeat due).
//!
//! Why not a `tokio::sync::mpsc` channel and a separate signal: an idle connection's channel
//! costs about 1 KiB (its state and first block of slots are allocated up front), this about
//! 100 bytes until something is queued. And the writer takes everything queued with one lock,
//! by swapping buffers, instead of one synchronised pop per item.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::connection::BATCH_KEEP_SLOTS;
use super::hub::Outbound;

/// An out-of-band signal to a connection's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The connection fell behind: something could not be queued.
    Lagged = 1,
    /// Its session was revoked or its user disabled on this node.
    Revoked = 2,
    /// Its session may have ended (a notice from elsewhere): check it against the store.
    Recheck = 4,
    /// The node is draining: say `reconnect` and close.
    Draining = 8,
    /// The ping interval has passed: check the idle deadline and ping.
    Heartbeat = 16,
}

#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Outbound>>,
    /// Most items the hub may have queued at once.
    capacity: usize,
    /// Raised signals, one bit each.
    signals: AtomicU8,
    /// The writer, while it waits. (Registering the same waker again takes no lock.)
    waker: AtomicWaker,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Self {
        Mailbox { queue: Mutex::new(VecDeque::new()), capacity, signals: AtomicU8::new(0), waker: AtomicWaker::new() }
    }

    /// Nothing panics while holding the lock, so a poisoned one is still consistent.
    fn queue(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From the hub: queues `item`, or, when the mailbox is full, drops it, raises `Lagged` and
    /// returns `false`.
    pub fn deliver(&self, item: Outbound) -> bool {
        let queued = {
            let mut queue = self.queue();
            let room = queue.len() < self.capacity;
            if room {
                queue.push_back(item);
            }
            room
        };
        if queued {
            self.waker.wake();
        } else {
            self.raise(Signal::Lagged);
        }
        queued
    }

    /// From the connection's reader: always queued, behind what is already there. (The reader
    /// has at most one client frame in flight, so this adds at most one item past the bound.)
    pub fn push_client(&self, item: Outbound) {
        self.queue().push_back(item);
        self.waker.wake();
    }

    pub fn raise(&self, signal: Signal) {
        self.signals.fetch_or(signal as u8, Ordering::AcqRel);
        self.waker.wake();
    }

    #[cfg(test)]
    pub fn is_raised(&self, signal: Signal) -> bool {
        self.signals.load(Ordering::Acquire) & signal as u8 != 0
    }

    pub fn any_raised(&self) -> bool {
        self.signals.load(Ordering::Acquire) != 0
    }

    /// Lowers `signal`, returning whether it was raised.
    pub fn take(&self, signal: Signal) -> bool {
        self.signals.fetch_and(!(signal as u8), Ordering::AcqRel) & signal as u8 != 0
    }

    /// Lowers every signal.
    pub fn lower_all(&self) {
        self.signals.store(0, Ordering::Release);
    }

    /// Drops everything queued.
    pub fn clear(&self) {
        self.queue().clear();
    }

    /// The first item queued, if any (for tests: the writer takes all at once).
    #[cfg(test)]
    pub fn pop(&self) -> Option<Outbound> {
        self.queue().pop_front()
    }

    /// The writer's wait: ready when a signal is raised or something is queued, in which case
    /// everything queued is moved to the end of `batch`. The waker is registered before either
    /// is looked at, so nothing raised or queued in between is missed.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outbound>) -> Poll<()> {
        self.waker.register(cx.waker());
        let mut queue = self.queue();
        let queued = !queue.is_empty();
        if queued {
            if batch.is_empty() {
                // Both buffers keep their capacity: no allocation in the steady state. (One a
                // burst grew is freed, so an idle connection does not keep it.)
                std::mem::swap(&mut *queue, batch);
                if queue.capacity() > BATCH_KEEP_SLOTS {
                    *queue = VecDeque::new();
                }
            } else {
                batch.append(&mut queue);
            }
        }
        drop(queue);
        if queued || self.any_raised() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(mailbox: &Mailbox, batch: &mut VecDeque<Outbound>, wakes: &Arc<Count>) -> Poll<()> {
        let waker = std::task::Waker::from(Arc::clone(wakes));
        mailbox.poll_next(&mut Context::from_waker(&waker), batch)
    }

    #[test]
    fn a_full_mailbox_drops_and_marks_the_connection_lagging() {
        let mailbox = Mailbox::new(2);
        assert!(mailbox.deliver(Outbound::Client(None)));
        assert!(mailbox.deliver(Outbound::Client(None)));
        assert!(!mailbox.is_raised(Signal::Lagged));
        assert!(!mailbox.deliver(Outbound::Client(None)), "the third is refused");
        assert!(mailbox.is_raised(Signal::Lagged));
        assert_eq!(mailbox.queue().len(), 2, "nothing grows past the bound");
        // The reader's own frames still get through (at most one in flight).
        mailbox.push_client(Outbound::Client(None));
        assert_eq!(mailbox.queue().len(), 3);
        mailbox.clear();
        assert!(mailbox.queue().is_empty());
    }

    #[test]
    fn the_writer_wakes_for_items_and_signals_and_takes_everything_at_once() {
        let mailbox = Mailbox::new(8);
        let wakes = Arc::new(Count(0.into()));
        let mut batch = VecDeque::new();
        assert!(poll(&mailbox, &mut batch, &wakes).is_pending());
        mailbox.deliver(Outbound::Client(None));
        mailbox.deliver(Outbound::Client(None));
        assert!(wakes.0.load(Ordering::SeqCst) >= 1, "a delivery wakes the waiting writer");
        assert!(poll(&mailbox, &mut batch, &wakes).is_ready());
        assert_eq!(batch.len(), 2);
        assert!(mailbox.queue().is_empty());
        batch.clear();
        assert!(poll(&mailbox, &mut batch, &wakes).is_pending());
        let before = wakes.0.load(Ordering::SeqCst);
        mailbox.raise(Signal::Heartbeat);
        assert!(wakes.0.load(Ordering::SeqCst) > before, "a signal wakes it too");
        assert!(poll(&mailbox, &mut batch, &wakes).is_ready());
        assert!(batch.is_empty());
        assert!(!mailbox.take(Signal::Revoked));
        assert!(mailbox.take(Signal::Heartbeat));
        assert!(!mailbox.take(Signal::Heartbeat), "taken once");
        assert!(poll(&mailbox, &mut batch, &wakes).is_pending());
    }

    #[test]
    fn items_queued_while_the_batch_is_not_empty_go_behind_it() {
        let mailbox = Mailbox::new(8);
        let wakes = Arc::new(Count(0.into()));
        let first = Outbound::Ephemeral(Arc::new(axum::extract::ws::Utf8Bytes::from_static("first")));
        let mut batch = VecDeque::from([first]);
        mailbox.deliver(Outbound::Client(None));
        assert!(poll(&mailbox, &mut batch, &wakes).is_ready());
        assert!(matches!(batch.pop_front(), Some(Outbound::Ephemeral(_))));
        assert!(matches!(batch.pop_front(), Some(Outbound::Client(None))));
    }
}
