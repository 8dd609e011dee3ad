//! The explorer page in a real headless Chromium, against a real `nullos-notary` holding a
//! farm, two nodes (one live, one whose lease ran out), and a placed contract with a status
//! report; and the directory's JSON through the blocking client.
//!
//! Needs Debian's `chromium`. Without it the test fails (it is never skipped).

mod support;

use std::path::Path;
use std::process::Command;

use notary_client::Client;
use support::grid::*;
use support::server::Server;

fn now() -> u64 {
    notary::grid::unix_now()
}

/// Farm, two enrolled nodes, a contract both stakeholders approved, placed on the live node,
/// which reported on it.
fn populate(c: &Client) -> trust::grid::Contract {
    let a = contract(2, 2048);
    c.submit(&by_signer(&farm(FARMER, 1, "Ghent <east> & co")))
        .unwrap();
    for n in [NODE, LAPSED] {
        c.submit(&by_signer(&node(n, FARMER, 1, 4, 8192))).unwrap();
        c.submit(&by_signer(&enroll(FARMER, n, 1, true))).unwrap();
    }
    assert_eq!(
        c.renew_lease(&by_signer(&lease(NODE, 1, now() + 300)))
            .unwrap()
            .0,
        1
    );
    c.renew_lease(&by_signer(&lease(LAPSED, 1, now() - 120)))
        .unwrap();
    c.submit(&by_signer(&a)).unwrap();
    c.submit(&by_signer(&approval(LEGAL, &a))).unwrap();
    c.submit(&by_signer(&approval(IT, &a))).unwrap();
    c.submit(&by_signer(&placement(&a, 1, NODE))).unwrap();
    c.submit(&by_signer(&status(&a, NODE, 1))).unwrap();
    a
}

fn chromium(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", cwd.join("profile").display()))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `chromium` ({e}): the explorer test needs a real browser; \
                 install Debian's `chromium` package (apt-get install chromium)"
            )
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first `<tr>` containing `needle`.
fn row<'a>(dom: &'a str, needle: &str) -> &'a str {
    let at = dom
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on the page"));
    let start = dom[..at].rfind("<tr").unwrap();
    let end = at + dom[at..].find("</tr>").unwrap();
    &dom[start..end]
}

#[test]
fn the_explorer_renders_the_grid_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_grid(&dir.path().join("data"), None);
    let c = Client::new(&server.url, &server.key).unwrap();
    let a = populate(&c);

    // The directory as JSON.
    let nodes = c.nodes().unwrap();
    let nodes = nodes["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let live = nodes
        .iter()
        .find(|n| n["key"] == hex::encode(pk(NODE).as_bytes()))
        .unwrap();
    assert_eq!(live["live"], true);
    assert_eq!(live["approved"], true);
    assert_eq!(live["used"]["cpus"], 2);
    assert_eq!(live["capacity"]["memory_mib"], 8192);
    let lapsed = nodes
        .iter()
        .find(|n| n["key"] == hex::encode(pk(LAPSED).as_bytes()))
        .unwrap();
    assert_eq!(lapsed["live"], false);
    assert_eq!(c.farms().unwrap()["farms"][0]["nodes"], 2);
    let info = c.contract(&a.id()).unwrap();
    assert_eq!(info["state"], "placed");
    assert_eq!(info["approvals"]["policy_met"], true);
    assert_eq!(
        info["approvals"]["signed"],
        serde_json::json!(["legal", "it"])
    );
    assert_eq!(info["placement"]["node"], hex::encode(pk(NODE).as_bytes()));
    assert_eq!(info["reports"][0]["workloads"][0]["state"], "running");
    let mine = c.contracts(Some(&pk(OWNER))).unwrap();
    assert_eq!(mine["contracts"].as_array().unwrap().len(), 1);
    assert!(c.contracts(Some(&pk(STRANGER))).unwrap()["contracts"]
        .as_array()
        .unwrap()
        .is_empty());

    // What a person sees.
    let url = format!("{}/", server.url);
    let dom = chromium(&["--dump-dom", &url], dir.path());
    assert!(dom.contains("<h1>nullos-notary</h1>"), "{dom}");
    let up = row(&dom, &pk(NODE).short());
    assert!(
        up.contains(">up<") && up.contains(">yes<") && up.contains("2 / 4"),
        "{up}"
    );
    let down = row(&dom, &pk(LAPSED).short());
    assert!(
        down.contains(">down<") && down.contains("lease ran out"),
        "{down}"
    );
    // The farm's name is text, not markup.
    assert!(dom.contains("Ghent &lt;east&gt; &amp; co"), "{dom}");
    let contract = row(&dom, &a.id().0.to_hex()[..16]);
    assert!(contract.contains(">placed<"), "{contract}");
    assert!(contract.contains("legal, it"), "{contract}");
    assert!(contract.contains(&pk(NODE).short()), "{contract}");
    assert!(
        contract.contains("web running, 1 restarts (serving)"),
        "{contract}"
    );
    assert!(dom.contains("<svg"), "the capacity picture is missing");
    let size = c.checkpoint().unwrap().0.size;
    assert!(dom.contains(&format!("<strong id=\"size\">{size}</strong>")));

    // And a screenshot, for a person to look at (kept when NOTARY_EXPLORER_SHOT names a file).
    let shot = dir.path().join("explorer.png");
    chromium(
        &[
            "--window-size=1200,900",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
        dir.path(),
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    if let Some(keep) = std::env::var_os("NOTARY_EXPLORER_SHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
