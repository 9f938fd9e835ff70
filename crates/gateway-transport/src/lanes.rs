//! Pooled clients side by side, so that calls past one HTTP/2 connection's streams open
//! another connection instead of queueing behind it.
//!
//! hyper-util's pooled client keeps one HTTP/2 connection per host and sends every call
//! over it. A gateway caps the streams open on a connection (`SETTINGS_MAX_CONCURRENT_
//! STREAMS`; RFC 9113 asks for at least 100), and calls past the cap wait inside hyper
//! for a stream to close, however many the limiter lets through: 1,000 callers on a
//! 50 ms gateway that allows 200 streams got 3,800 calls per second and 260 ms at p50
//! (BENCHMARKS.md). So each lane is a client with a pool of its own, and a call takes
//! the first lane with fewer than [`STREAMS_PER_CONNECTION`] calls on it: one connection
//! serves up to that many, and the next opens only when all are that busy.
//!
//! The first lane offers HTTP/2 and HTTP/1.1 by ALPN, as a single client would. The
//! others offer HTTP/2 alone and take calls only to a host that has answered over
//! HTTP/2 (the client also fetches tokens from the login host, which may not speak
//! it): a host that speaks HTTP/1.1 gets one pool, as before (and a host known to speak
//! HTTP/2 is forgotten when it answers over HTTP/1.1), and an HTTP/2-only client
//! lets one call at a time open its connection while the others wait for it (with
//! ALPN, every call waiting for a first handshake opens a connection of its own).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use http::uri::Authority;

/// Calls a lane takes before the next lane is used: the fewest concurrent streams RFC
/// 9113 asks a server to allow.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Most lanes a client keeps, whatever it is asked for: enough for the largest
/// `max_concurrency` a configuration may set (10,000).
pub const MAX_LANES: usize = 100;

/// One client and the calls on it.
#[derive(Debug)]
struct Lane<C> {
    client: C,
    in_flight: AtomicUsize,
}

impl<C> Lane<C> {
    fn new(client: C) -> Self {
        Self {
            client,
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// The lanes of one HTTP client.
#[derive(Debug)]
pub(crate) struct Lanes<C> {
    /// The first lane, and the HTTP/2-only ones after it.
    lanes: Box<[Lane<C>]>,
    /// The hosts that have answered over HTTP/2, whose calls may take the other lanes.
    http2_hosts: RwLock<Vec<Authority>>,
}

/// A call's place on a lane, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket<'a, C> {
    lane: &'a Lane<C>,
}

impl<C> Ticket<'_, C> {
    /// The lane's client.
    pub(crate) fn client(&self) -> &C {
        &self.lane.client
    }
}

impl<C> Drop for Ticket<'_, C> {
    fn drop(&mut self) {
        self.lane.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C> Lanes<C> {
    /// `first`, and `more` lanes (at most [`MAX_LANES`] in all) made by `make` for when
    /// the gateway speaks HTTP/2.
    pub(crate) fn new(first: C, more: usize, make: impl FnMut() -> C) -> Self {
        let lanes = std::iter::once(first)
            .chain(std::iter::repeat_with(make).take(more.min(MAX_LANES - 1)))
            .map(Lane::new)
            .collect();
        Self {
            lanes,
            http2_hosts: RwLock::new(Vec::new()),
        }
    }

    /// How many lanes there are.
    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Notes that `host` answered over HTTP/2: its calls may take the other lanes.
    pub(crate) fn saw_http2(&self, host: &Authority) {
        if self.lanes.len() == 1 || self.speaks_http2(host) {
            return;
        }
        let mut hosts = self
            .http2_hosts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !hosts.contains(host) {
            hosts.push(host.clone());
        }
    }

    fn speaks_http2(&self, host: &Authority) -> bool {
        self.http2_hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(host)
    }

    /// Notes that `host` answered over HTTP/1.1: it no longer speaks HTTP/2 (a load
    /// balancer changed, say), so its calls keep to the first lane, which offers both.
    pub(crate) fn saw_http1(&self, host: &Authority) {
        if self.lanes.len() == 1 || !self.speaks_http2(host) {
            return;
        }
        self.http2_hosts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|known| known != host);
    }

    /// A place for one call to `host`: the first lane while it has room or while `host`
    /// is not known to speak HTTP/2; else the first lane with room, or the least busy.
    /// A lane's room is checked and taken at once, so callers at the same moment never
    /// put more than [`STREAMS_PER_CONNECTION`] calls on a lane while another has room.
    pub(crate) fn take(&self, host: Option<&Authority>) -> Ticket<'_, C> {
        let first = &self.lanes[0];
        let Err(mut fewest) = Self::room(first) else {
            return Ticket { lane: first };
        };
        if !host.is_some_and(|host| self.speaks_http2(host)) {
            return Self::ticket(first);
        }
        let mut least = first;
        for lane in &self.lanes[1..] {
            match Self::room(lane) {
                Ok(()) => return Ticket { lane },
                Err(calls) if calls < fewest => (least, fewest) = (lane, calls),
                Err(_) => {}
            }
        }
        Self::ticket(least)
    }

    /// Takes a place on `lane` if it has fewer than [`STREAMS_PER_CONNECTION`] calls
    /// (checked and taken at once); else its calls.
    fn room(lane: &Lane<C>) -> Result<(), usize> {
        lane.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |calls| {
                (calls < STREAMS_PER_CONNECTION).then_some(calls + 1)
            })
            .map(drop)
    }

    fn ticket(lane: &Lane<C>) -> Ticket<'_, C> {
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        Ticket { lane }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes whose clients are their numbers, from 1.
    fn lanes(more: usize) -> Lanes<usize> {
        let mut next = 1;
        Lanes::new(1, more, || {
            next += 1;
            next
        })
    }

    fn api() -> Authority {
        Authority::from_static("api.example.com")
    }

    fn take(lanes: &Lanes<usize>, n: usize) -> Vec<Ticket<'_, usize>> {
        (0..n).map(|_| lanes.take(Some(&api()))).collect()
    }

    fn calls(lanes: &Lanes<usize>) -> Vec<usize> {
        lanes
            .lanes
            .iter()
            .map(|lane| lane.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn calls_to_a_host_not_seen_over_http2_take_the_first_lane() {
        let lanes = lanes(2);
        assert_eq!(lanes.len(), 3);
        lanes.saw_http2(&Authority::from_static("login.example.com"));
        let tickets = take(&lanes, 250);
        assert!(tickets.iter().all(|t| *t.client() == 1));
        assert_eq!(calls(&lanes), [250, 0, 0]);
        assert_eq!(*lanes.take(None).client(), 1);
        drop(tickets);
        assert_eq!(calls(&lanes), [0, 0, 0]);
    }

    #[test]
    fn over_http2_a_lane_fills_before_the_next_is_used_then_the_least_busy_takes_more() {
        let lanes = lanes(2);
        lanes.saw_http2(&api());
        let first = take(&lanes, STREAMS_PER_CONNECTION);
        assert!(first.iter().all(|t| *t.client() == 1));
        let second = take(&lanes, STREAMS_PER_CONNECTION);
        assert!(second.iter().all(|t| *t.client() == 2));
        let third = take(&lanes, STREAMS_PER_CONNECTION - 1);
        assert_eq!(calls(&lanes), [100, 100, 99]);
        let last = lanes.take(Some(&api()));
        assert_eq!(*last.client(), 3);
        let overflow = take(&lanes, 3);
        let went: Vec<_> = overflow.iter().map(|t| *t.client()).collect();
        assert_eq!(went, [1, 2, 3], "all full: each goes to the least busy");
        drop(second);
        assert_eq!(
            *lanes.take(Some(&api())).client(),
            2,
            "lane 2 has room again"
        );
        drop((first, third, last, overflow));
        assert_eq!(calls(&lanes), [0, 0, 0]);
    }

    #[test]
    fn a_host_that_answers_over_http1_again_keeps_to_the_first_lane() {
        let lanes = lanes(1);
        lanes.saw_http2(&api());
        let first = take(&lanes, STREAMS_PER_CONNECTION);
        assert_eq!(*lanes.take(Some(&api())).client(), 2);
        lanes.saw_http1(&api());
        let more = take(&lanes, 10);
        assert!(more.iter().all(|t| *t.client() == 1));
        assert_eq!(calls(&lanes), [110, 0]);
        drop((first, more));
    }

    #[test]
    fn no_more_than_max_lanes_are_made() {
        assert_eq!(lanes(usize::MAX).len(), MAX_LANES);
    }

    #[test]
    fn one_lane_takes_every_call() {
        let lanes = lanes(0);
        lanes.saw_http2(&api());
        let tickets = take(&lanes, 150);
        assert!(tickets.iter().all(|t| *t.client() == 1));
        assert_eq!(calls(&lanes), [150]);
    }
}
