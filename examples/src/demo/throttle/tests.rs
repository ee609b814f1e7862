//! The throttle's policy: the rule about clean pairs, the three counts,
//! check-and-count in one step, and the table's bounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::table::{Client, Key, NameHasher, Table};
use super::{LoginThrottle, Refusal, ThrottlePolicy, Ticket};

const MIN: Duration = Duration::from_secs(60);

fn addr(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, last]))
}

fn admit() -> Option<()> {
    Some(())
}

/// One attempt: `Ok(ticket)` when the password may be checked.
fn attempt(
    throttle: &LoginThrottle,
    name: &str,
    from: Option<IpAddr>,
    at: Instant,
) -> Result<Ticket, Refusal> {
    throttle
        .begin(name, from, at, admit)
        .map(|(ticket, ())| ticket)
}

/// `count` wrong passwords for `name` from `from`, each of them admitted.
fn fail(throttle: &LoginThrottle, name: &str, from: Option<IpAddr>, at: Instant, count: u32) {
    for i in 0..count {
        let ticket = attempt(throttle, name, from, at)
            .unwrap_or_else(|refusal| panic!("failure {i} of {name} refused: {refusal:?}"));
        drop(ticket); // a wrong password: stays counted
    }
}

#[test]
fn the_sixth_attempt_of_a_pair_waits_until_its_window_ends() {
    let throttle = LoginThrottle::default();
    let start = Instant::now();
    fail(&throttle, "alice", addr(1), start, 5);
    // In any case and spacing: the name is the same.
    let later = start + 5 * MIN;
    assert_eq!(
        attempt(&throttle, "Alice ", addr(1), later).unwrap_err(),
        Refusal::Throttled(10 * MIN)
    );
    // Not locked out forever: the window ends.
    assert!(attempt(&throttle, "alice", addr(1), start + 15 * MIN).is_ok());
}

#[test]
fn a_burst_is_counted_before_any_password_is_checked() {
    // 40 attempts begin before any of them reports its outcome (the hashes
    // all still running): only the pair's allowance gets through.
    let throttle = LoginThrottle::default();
    let now = Instant::now();
    let tickets: Vec<_> = (0..40)
        .filter_map(|_| attempt(&throttle, "alice", addr(1), now).ok())
        .collect();
    assert_eq!(tickets.len(), 5);
}

#[test]
fn a_clean_pair_is_never_refused_whatever_the_name_and_the_address_went_through() {
    let throttle = LoginThrottle::default();
    let now = Instant::now();
    // 60 addresses fail twice each for alice: the name is far past 50.
    for i in 0..60 {
        fail(&throttle, "alice", addr(i), now, 2);
    }
    // Address 200 fails for 30 other names: past its own limit of 20.
    for i in 0..30 {
        fail(&throttle, &format!("user{i}"), addr(200), now, 1);
    }
    // Neither has failed for alice from address 200: it is let through.
    let ticket = attempt(&throttle, "alice", addr(200), now).unwrap();
    throttle.succeeded(ticket);
    // And again: a right password leaves the pair clean.
    assert!(attempt(&throttle, "alice", addr(200), now).is_ok());
}

#[test]
fn a_name_under_attack_cuts_the_tries_of_addresses_that_already_failed_for_it() {
    let throttle = LoginThrottle::default();
    let start = Instant::now();
    fail(&throttle, "alice", addr(1), start, 2);
    // 48 more failures elsewhere: the name reaches its limit of 50.
    for i in 0..16 {
        fail(&throttle, "alice", addr(100 + i), start, 3);
    }
    // Address 1 has had 2 tries: cut from 5 to 2, so it waits, until the
    // first window (its own and the name's, both began at `start`) ends.
    let later = start + MIN;
    assert_eq!(
        attempt(&throttle, "alice", addr(1), later).unwrap_err(),
        Refusal::Throttled(14 * MIN)
    );
    // A pair with one failure still has its second try.
    fail(&throttle, "alice", addr(2), later, 1);
    assert!(attempt(&throttle, "alice", addr(2), later).is_ok());
    // Other names from address 1 are untouched.
    assert!(attempt(&throttle, "bob", addr(1), later).is_ok());
}

#[test]
fn an_address_past_its_limit_loses_its_retries_but_not_its_first_tries() {
    let throttle = LoginThrottle::default();
    let now = Instant::now();
    for i in 0..20 {
        fail(&throttle, &format!("user{i}"), addr(7), now, 1);
    }
    fail(&throttle, "user0", addr(7), now, 1);
    // user0 has had 2 tries from address 7, the cut allowance.
    assert_eq!(
        attempt(&throttle, "user0", addr(7), now).unwrap_err(),
        Refusal::Throttled(15 * MIN)
    );
    // A name address 7 never tried, and user0 from elsewhere, go through.
    assert!(attempt(&throttle, "bob", addr(7), now).is_ok());
    assert!(attempt(&throttle, "user0", addr(8), now).is_ok());
}

#[test]
fn the_cut_lifts_when_the_limit_it_comes_from_ends() {
    let throttle = LoginThrottle::default();
    let start = Instant::now();
    // The address passes its limit at `start`...
    for i in 0..20 {
        fail(&throttle, &format!("user{i}"), addr(7), start, 1);
    }
    // ...and fails twice for alice ten minutes later.
    let later = start + 10 * MIN;
    fail(&throttle, "alice", addr(7), later, 2);
    // Refused until the address's window ends (5 minutes), not the pair's.
    assert_eq!(
        attempt(&throttle, "alice", addr(7), later).unwrap_err(),
        Refusal::Throttled(5 * MIN)
    );
    // Then alice has 3 more tries from address 7, up to the pair's limit.
    let after = start + 15 * MIN;
    fail(&throttle, "alice", addr(7), after, 3);
    assert!(matches!(
        attempt(&throttle, "alice", addr(7), after),
        Err(Refusal::Throttled(_))
    ));
}

#[test]
fn a_right_password_resets_its_pair_and_takes_back_only_its_own_attempt() {
    let throttle = LoginThrottle::new(ThrottlePolicy {
        per_pair: 3,
        per_pair_under_attack: 1,
        per_address: 4,
        ..ThrottlePolicy::default()
    });
    let now = Instant::now();
    fail(&throttle, "alice", addr(1), now, 2);
    let ticket = attempt(&throttle, "alice", addr(1), now).unwrap();
    throttle.succeeded(ticket);
    // The pair starts over: 3 tries again.
    fail(&throttle, "alice", addr(1), now, 2);
    // The address keeps its 4 failures (2 before, 2 after): an attacker
    // signing in to their own account cannot wipe them, so a name that
    // fails once more from this address has no second try.
    fail(&throttle, "mallory", addr(1), now, 1);
    assert!(attempt(&throttle, "mallory", addr(1), now).is_err());
}

#[test]
fn an_attempt_that_is_not_admitted_is_not_counted() {
    let throttle = LoginThrottle::default();
    let now = Instant::now();
    for _ in 0..10 {
        let refused = throttle.begin("alice", addr(1), now, || None::<()>);
        assert_eq!(refused.unwrap_err(), Refusal::NotAdmitted);
    }
    assert_eq!(throttle.tracked(), 0);
    fail(&throttle, "alice", addr(1), now, 5);
}

#[test]
fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
    let v6 = |last: u16| {
        Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 1, 2, 0, 0, 0, last,
        )))
    };
    let throttle = LoginThrottle::default();
    let now = Instant::now();
    // Five addresses of one /64 are one client.
    for i in 0..5 {
        fail(&throttle, "alice", v6(i), now, 1);
    }
    assert!(attempt(&throttle, "alice", v6(999), now).is_err());
    let other_64 = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1)));
    assert!(attempt(&throttle, "alice", other_64, now).is_ok());

    fail(&throttle, "bob", addr(9), now, 5);
    let mapped = Some(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()));
    assert!(attempt(&throttle, "bob", mapped, now).is_err());
    assert_eq!(Client::of(None), Client::Unknown);
}

#[test]
fn name_keys_have_a_fixed_size_whatever_the_name() {
    let names = NameHasher::default();
    assert_eq!(size_of::<Key>(), size_of_val(&Key::Name(names.key(""))));
    assert!(size_of::<Key>() <= 32, "{} bytes", size_of::<Key>());
    let long = "x".repeat(1 << 20);
    // A megabyte of name is held in the same 16 bytes as any other.
    assert_ne!(names.key(&long), names.key(&long[1..]));
    assert_eq!(names.key(" Alice"), names.key("alice"));
    assert_ne!(names.key("alice"), names.key("alice2"));
    // Another throttle hashes with other keys: no one can precompute them.
    assert_ne!(NameHasher::default().key("alice"), names.key("alice"));
}

#[test]
fn the_table_never_holds_more_than_its_capacity() {
    let throttle = LoginThrottle::new(ThrottlePolicy {
        capacity: 300,
        ..ThrottlePolicy::default()
    });
    let now = Instant::now();
    for i in 0..2_000_u32 {
        let from = Some(IpAddr::from(i.to_be_bytes()));
        fail(&throttle, &format!("name{i}"), from, now, 1);
        assert!(throttle.tracked() <= 300);
    }
    assert_eq!(throttle.tracked(), 300);
}

#[test]
fn a_flood_of_names_cannot_flush_the_counts_of_a_real_attack() {
    let throttle = LoginThrottle::new(ThrottlePolicy {
        capacity: 300,
        ..ThrottlePolicy::default()
    });
    let start = Instant::now();
    fail(&throttle, "alice", addr(1), start, 5);
    // Then 10 000 fresh names from fresh addresses, one failure each.
    for i in 0..10_000_u32 {
        let from = Some(IpAddr::from((i + 1_000).to_be_bytes()));
        fail(&throttle, &format!("flood{i}"), from, start + MIN, 1);
    }
    // The attack on alice from address 1 is still counted.
    assert_eq!(
        attempt(&throttle, "alice", addr(1), start + MIN).unwrap_err(),
        Refusal::Throttled(14 * MIN)
    );
}

#[test]
fn a_table_full_of_repeated_failures_refuses_new_pairs_until_the_first_window_ends() {
    let throttle = LoginThrottle::new(ThrottlePolicy {
        capacity: 30,
        ..ThrottlePolicy::default()
    });
    let start = Instant::now();
    // 10 addresses fail twice for 10 names: 30 entries of 2 failures.
    for i in 0..10 {
        fail(&throttle, &format!("name{i}"), addr(i), start, 2);
    }
    let later = start + 3 * MIN;
    assert_eq!(
        attempt(&throttle, "alice", addr(200), later).unwrap_err(),
        Refusal::Full(12 * MIN)
    );
    // Once those windows end, their entries go and room is there.
    assert!(attempt(&throttle, "alice", addr(200), start + 15 * MIN).is_ok());
    assert!(throttle.tracked() <= 3);
}

#[test]
fn expired_entries_leave_from_the_front_and_records_stay_bounded() {
    let mut table = Table::new(100);
    let start = Instant::now();
    let hasher = NameHasher::default();
    // 10 000 keys, counted and taken back one after another: records of
    // the taken-back entries go stale and must not pile up.
    for i in 0..10_000 {
        let key = Key::Name(hasher.key(&i.to_string()));
        assert!(table.make_room(&[key], start));
        let serial = table.count(key, start, MIN);
        table.uncount(&key, serial);
        assert!(
            table.records() <= 2 * 100 + 17,
            "{} records",
            table.records()
        );
    }
    for i in 0..50 {
        let key = Key::Name(hasher.key(&format!("live{i}")));
        assert!(table.make_room(&[key], start));
        table.count(key, start + i * Duration::from_secs(1), MIN);
    }
    assert_eq!(table.len(), 50);
    // 30 s past the first window's end: the first 31 have ended.
    table.prune(start + MIN + Duration::from_secs(30));
    assert_eq!(table.len(), 19);
}
