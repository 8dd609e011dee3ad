//! The control plane's documents (trust::grid): the first byte picks the kind (its document
//! kind code, 3 to 11, modulo 9); the rest is decoded as that kind's body, which must never
//! panic and accept only canonical bytes, and then as a whole signed file of that kind, whose
//! verification by the key the body names must never panic either. A status report's sealed
//! console tails are opened with a fixed key, which must fail cleanly, never panic.

use trust::grid::sealed;
use trust::grid::{
    Approval, Cancellation, Contract, Enrollment, Farm, Lease, NodeRegistration, Placement,
    StatusReport,
};
use trust::{verify_named, NamedSigner, SecretKey, SignedBody};

fn check<B: NamedSigner>(data: &[u8]) {
    if let Ok(body) = B::decode(data) {
        assert_eq!(
            body.encode(),
            data,
            "decode accepted a non-canonical encoding"
        );
    }
    if let Ok(opened) = verify_named::<B>(data) {
        assert_eq!(opened.body.encode(), opened.document.body());
    }
}

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector.wrapping_sub(3) % 9 {
        0 => check::<Farm>(rest),
        1 => check::<NodeRegistration>(rest),
        2 => check::<Contract>(rest),
        3 => check::<Approval>(rest),
        4 => check::<Placement>(rest),
        5 => check::<Cancellation>(rest),
        6 => {
            check::<StatusReport>(rest);
            if let Ok(report) = StatusReport::decode(rest) {
                let key = SecretKey::from_seed([0x5e; 32]);
                for w in &report.workloads {
                    if let Some(tail) = &w.tail {
                        let _ = sealed::open(&key, &report.tail_context(&w.name), tail);
                    }
                }
            }
        }
        7 => check::<Lease>(rest),
        _ => check::<Enrollment>(rest),
    }
}
