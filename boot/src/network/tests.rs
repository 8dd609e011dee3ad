use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use trust::{SecretKey, SignerPolicy};

use super::*;
use crate::verify::tests::{dev_image, CMDLINE, INITRD, KERNEL};
use crate::verify::{self, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};

#[test]
fn the_command_line_wins_over_the_baked_list() {
    let baked = "# mirrors\nhttp://a/release\n\n  http://b/release  \n";
    assert_eq!(
        release_urls(b"console=ttyS0 quiet", Some(baked)),
        ["http://a/release", "http://b/release"]
    );
    assert_eq!(
        release_urls(
            b"console=ttyS0 nullos.release=http://10.0.2.2:8080/release nullos.release= x",
            Some(baked)
        ),
        ["http://10.0.2.2:8080/release"]
    );
    // Words after `--` are init's arguments, not the kernel's.
    assert_eq!(
        release_urls(b"quiet -- nullos.release=http://c/", None),
        Vec::<String>::new()
    );
    assert!(release_urls(b"quiet", None).is_empty());
    // Split as the kernel splits: 0xa0 ends the URL, quotes are removed.
    assert_eq!(
        release_urls(b"nullos.release=\"http://h/r\"\xa0x", None),
        ["http://h/r"]
    );
}

#[test]
fn artifact_urls_join_with_one_slash() {
    assert_eq!(artifact_url("http://h/r/", "kernel"), "http://h/r/kernel");
    assert_eq!(artifact_url("http://h/r", "initrd"), "http://h/r/initrd");
}

#[test]
fn backoff_doubles_and_is_capped() {
    assert_eq!(backoff(1), BACKOFF_BASE);
    assert_eq!(backoff(2), BACKOFF_BASE * 2);
    assert_eq!(backoff(3), BACKOFF_BASE * 4);
    assert_eq!(backoff(4), BACKOFF_MAX);
    assert_eq!(backoff(100), BACKOFF_MAX);
}

#[test]
fn bounded_reads_never_take_more_than_the_cap_plus_one() {
    assert_eq!(
        read_bounded(&b"abc"[..], 3, Some(3), Deadline::DEFAULT.base).unwrap(),
        b"abc"
    );
    assert_eq!(
        read_bounded(&b"abc"[..], 3, None, Deadline::DEFAULT.base).unwrap(),
        b"abc"
    );
    let endless = std::io::repeat(7);
    match read_bounded(endless, 10, None, Deadline::DEFAULT.base) {
        Err(HttpError::TooLarge { found: 11, max: 10 }) => {}
        other => panic!("{other:?}"),
    }
    match read_bounded(&b"ab"[..], 3, Some(3), Deadline::DEFAULT.base) {
        Err(HttpError::Short {
            read: 2,
            announced: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
}

fn signed_release(signer: &SecretKey) -> BTreeMap<String, Vec<u8>> {
    verify::tests::signed_release_files(3, signer)
}

/// A one-thread HTTP/1.1 server on loopback serving `files` under `/release/`; `length`
/// overrides the announced `Content-Length` of one file. Returns the release URL.
fn serve(files: BTreeMap<String, Vec<u8>>, length: Option<(&'static str, u64)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let name = path.strip_prefix("/release/").unwrap_or("");
            let mut out = &stream;
            let _ = match files.get(name) {
                Some(body) => {
                    let announced = match length {
                        Some((n, l)) if n == name => l,
                        _ => body.len() as u64,
                    };
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| out.write_all(body))
                }
                None => out.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    format!("http://127.0.0.1:{port}/release")
}

#[test]
fn a_release_served_over_http_verifies() {
    let signer = SecretKey::from_seed([1; 32]);
    let url = serve(signed_release(&signer), None);
    let policy = SignerPolicy::single(signer.public());
    let verified = verify::verify(&mut HttpSource::new(&url), &policy, &dev_image(), 0).unwrap();
    assert_eq!(verified.kernel, KERNEL);
    assert_eq!(verified.initrd, INITRD);
    assert_eq!(verified.cmdline, CMDLINE);
}

#[test]
fn a_tampered_initrd_over_http_is_refused() {
    let signer = SecretKey::from_seed([1; 32]);
    let mut files = signed_release(&signer);
    files.insert(INITRD_FILE.into(), b"an initramfX".to_vec());
    let url = serve(files, None);
    let policy = SignerPolicy::single(signer.public());
    let refusal = verify::verify(&mut HttpSource::new(&url), &policy, &dev_image(), 0).unwrap_err();
    assert_eq!(refusal.artifact, INITRD_FILE);
    assert!(refusal.reason.contains("expected"), "{refusal}");
}

#[test]
fn a_body_longer_than_signed_is_refused_before_it_is_read() {
    let signer = SecretKey::from_seed([1; 32]);
    let mut files = signed_release(&signer);
    files.insert(KERNEL_FILE.into(), vec![0; 1 << 20]);
    let url = serve(files, None);
    let policy = SignerPolicy::single(signer.public());
    let refusal = verify::verify(&mut HttpSource::new(&url), &policy, &dev_image(), 0).unwrap_err();
    assert_eq!(refusal.artifact, KERNEL_FILE);
    assert!(refusal.reason.contains("not read"), "{refusal}");
}

#[test]
fn a_lying_content_length_is_caught_by_the_bounded_read() {
    let signer = SecretKey::from_seed([1; 32]);
    let mut files = signed_release(&signer);
    let mut longer = INITRD.to_vec();
    longer.extend_from_slice(&[0; 4096]);
    files.insert(INITRD_FILE.into(), longer);
    // The server claims the signed size but sends more.
    let url = serve(files, Some(("initrd", INITRD.len() as u64)));
    let mut source = HttpSource::new(&url);
    let bytes = source.read(INITRD_FILE, INITRD.len() as u64);
    // ureq stops at Content-Length: what is read is exactly the announced bytes, never more.
    assert_eq!(bytes.unwrap().len(), INITRD.len());
}

#[test]
fn a_missing_file_is_a_client_error_not_retried() {
    let url = serve(BTreeMap::new(), None);
    let start = std::time::Instant::now();
    let e = HttpSource::new(&url).len(MANIFEST_FILE, 4096).unwrap_err();
    assert_eq!(e, "HTTP 404 Not Found");
    assert!(start.elapsed() < BACKOFF_BASE, "a 404 must not be retried");
}

#[test]
fn the_deadline_grows_with_the_size() {
    let d = Deadline {
        base: std::time::Duration::from_secs(30),
        min_bytes_per_sec: 1000,
    };
    assert_eq!(d.for_size(0), std::time::Duration::from_secs(30));
    assert_eq!(d.for_size(2500), std::time::Duration::from_millis(32_500));
    assert_eq!(
        Deadline::DEFAULT.for_size(100 << 20),
        std::time::Duration::from_secs(30 + 1600)
    );
    // A byte every 29 s stays under the per-read timeout but not under this.
    assert!(Deadline::DEFAULT.for_size(MAX_MANIFEST) < std::time::Duration::from_secs(29 * 2));
}

const MAX_MANIFEST: u64 = trust::limits::MAX_RELEASE_MANIFEST_BYTES as u64;

/// Serves `files` under `/release/`, one thread per connection; `drip` is sent with its true
/// Content-Length but one byte a second, until the client goes away.
fn serve_dripping(files: BTreeMap<String, Vec<u8>>, drip: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = std::sync::Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let name = request
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.strip_prefix("/release/"))
                    .unwrap_or("")
                    .to_owned();
                let mut out = &stream;
                let Some(body) = files.get(&name) else {
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                if name != drip {
                    let _ = out.write_all(body);
                    return;
                }
                for byte in body {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if out.write_all(&[*byte]).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/release")
}

/// Issue 14: a source that drips a byte at a time, each inside the per-read timeout, held
/// stage 0 in one request forever. With the overall deadline it is refused.
#[test]
fn a_slow_drip_source_is_abandoned_at_the_deadline() {
    let signer = SecretKey::from_seed([1; 32]);
    let url = serve_dripping(signed_release(&signer), KERNEL_FILE);
    let policy = SignerPolicy::single(signer.public());
    let short = Deadline {
        base: std::time::Duration::from_secs(3),
        min_bytes_per_sec: 1 << 30,
    };
    let mut source = HttpSource::with_deadline(&url, short);
    let refusal = verify::verify(&mut source, &policy, &dev_image(), 0).unwrap_err();
    let line = refusal_at(&url, refusal).to_string();
    assert_eq!(
        line,
        format!(
            "nullos: refused kernel: {url}/kernel: not received within its deadline of 3 s \
             (scaled to the {} bytes allowed)",
            KERNEL.len()
        )
    );
}

#[test]
fn host_names_in_release_urls_are_resolved() {
    let signer = SecretKey::from_seed([1; 32]);
    let url = serve(signed_release(&signer), None).replace("127.0.0.1", "localhost");
    let policy = SignerPolicy::single(signer.public());
    let verified = verify::verify(&mut HttpSource::new(&url), &policy, &dev_image(), 0).unwrap();
    assert_eq!(verified.kernel, KERNEL);
}

#[test]
fn a_host_name_that_does_not_resolve_says_so() {
    use ureq::Resolver;
    let e = BoundedResolver
        .resolve("nullos-no-such-host.invalid:8080")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot resolve host nullos-no-such-host.invalid: "),
        "{e}"
    );
}
