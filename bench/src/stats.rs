//! Pure helpers: pulling numbers out of console lines, medians, and the report lines.

/// The `uptime_ms=<n>` field of a console line (`nullos: ready ...` or `baseline: ...`).
pub fn uptime_ms(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("uptime_ms="))
        .and_then(|value| value.parse().ok())
}

/// Median of the samples (shared with the micro-VM summary, which lives with its protocol).
pub use bench_inits::proto::median;

/// The summary line of a side-by-side comparison: medians and their ratio against a goal.
///
/// `boot-to-ready: nullos 3600 ms vs baseline 2000 ms => ratio 1.80 (goal <= 1.05)`
pub fn comparison_line(
    what: &str,
    ours: &[u64],
    baseline: &[u64],
    goal_ratio: f64,
) -> Option<String> {
    let ours = median(ours)?;
    let baseline = median(baseline)?;
    let ratio = if baseline > 0.0 {
        format!("{:.2}", ours / baseline)
    } else {
        "n/a".to_string()
    };
    Some(format!(
        "{what}: nullos {ours:.0} ms vs baseline {baseline:.0} ms => ratio {ratio} (goal <= {goal_ratio:.2})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_read_from_ready_and_baseline_lines() {
        let ready = "nullos: ready version=1 profile=dev address=10.0.2.15/24 iface=eth0 uptime_ms=3456 control=reachable listening=0";
        assert_eq!(uptime_ms(ready), Some(3456));
        assert_eq!(
            uptime_ms("baseline: init reached uptime_ms=1987"),
            Some(1987)
        );
        assert_eq!(uptime_ms("baseline: init reached uptime_ms="), None);
        assert_eq!(uptime_ms("nullos: ready uptime_ms=12x"), None);
        assert_eq!(uptime_ms("no_uptime_ms=5"), None);
    }

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[30, 10, 20]), Some(20.0));
        assert_eq!(median(&[40, 10, 30, 20]), Some(25.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_summary_line_has_the_agreed_shape() {
        assert_eq!(
            comparison_line(
                "boot-to-ready",
                &[2100, 2000, 2200],
                &[2000, 1900, 2050],
                1.05
            )
            .as_deref(),
            Some("boot-to-ready: nullos 2100 ms vs baseline 2000 ms => ratio 1.05 (goal <= 1.05)")
        );
        assert_eq!(comparison_line("x", &[], &[1], 1.0), None);
        assert!(comparison_line("x", &[5], &[0], 1.0)
            .unwrap()
            .contains("ratio n/a"));
    }
}
