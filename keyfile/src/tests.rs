use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generate_writes_a_private_secret_and_its_public_line_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("keys/alice.key");
    let public_path = public_path_beside(&secret);
    assert_eq!(public_path, dir.path().join("keys/alice.key.pub"));
    let public = generate(&secret, &public_path, "alice").unwrap();
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&public_path), 0o644);
    assert_eq!(load_secret(&secret).unwrap().public(), public);
    assert_eq!(load_public(&public_path).unwrap(), public);
    assert_eq!(
        std::fs::read_to_string(&public_path).unwrap(),
        format!("{}\n", public.to_text())
    );

    let before = std::fs::read(&secret).unwrap();
    let err = generate(&secret, &public_path, "again").unwrap_err();
    assert!(
        matches!(&err, KeyFileError::Exists(p) if *p == secret),
        "{err}"
    );
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&secret).unwrap(), before);
}

#[test]
fn generate_refuses_when_only_the_public_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("k");
    let public = dir.path().join("k.pub");
    std::fs::write(&public, "x").unwrap();
    assert!(matches!(
        generate(&secret, &public, ""),
        Err(KeyFileError::Exists(p)) if p == public
    ));
    assert!(!secret.exists());
    assert_eq!(std::fs::read_to_string(&public).unwrap(), "x");
}

#[test]
fn load_or_create_creates_once_with_mode_0600_then_loads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/service.key");
    let (first, created) = load_or_create_secret(&path, "service key").unwrap();
    assert!(created);
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("comment service key\n"), "{text}");
    let (again, created) = load_or_create_secret(&path, "other comment").unwrap();
    assert!(!created);
    assert_eq!(again.public(), first.public());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn load_or_create_refuses_a_damaged_file_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service.key");
    std::fs::write(&path, "nullos-ed25519-secret v1\nseed 00\n").unwrap();
    let err = load_or_create_secret(&path, "").unwrap_err();
    assert!(matches!(err, KeyFileError::Parse { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nullos-ed25519-secret v1\nseed 00\n"
    );
}

#[test]
fn load_secret_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.key");
    std::fs::write(&path, "not a key\n").unwrap();
    let err = load_secret(&path).unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("bad.key"), "{err}");
    assert!(err.to_string().contains("secret key file"), "{err}");

    let missing = load_secret(&dir.path().join("missing.key")).unwrap_err();
    assert!(matches!(missing, KeyFileError::Read { .. }), "{missing}");
    assert!(missing.is_bad_input());
    assert!(missing.to_string().starts_with("cannot read"), "{missing}");
}

#[test]
fn an_oversized_key_file_is_refused_by_its_limit_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.key");
    let key = SecretKey::from_seed([5; 32]).to_text("");
    let mut text = key.clone();
    text.push_str(&"#".repeat(1024 * 1024));
    std::fs::write(&path, &text).unwrap();
    let err = load_secret(&path).unwrap_err();
    assert!(
        matches!(
            err,
            KeyFileError::Parse {
                source: KeyError::TooLarge { len, max },
                ..
            } if len == MAX_KEY_TEXT_BYTES + 1 && max == MAX_KEY_TEXT_BYTES
        ),
        "{err:?}"
    );
    // Exactly at the cap is still a key.
    let mut text = key;
    text.push_str(&"#".repeat(MAX_KEY_TEXT_BYTES - text.len()));
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        load_secret(&path).unwrap().public(),
        SecretKey::from_seed([5; 32]).public()
    );
}

#[test]
fn a_trust_file_is_a_signer_policy_or_a_single_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = SecretKey::from_seed([1; 32]).public();
    let b = SecretKey::from_seed([2; 32]).public();

    let single = dir.path().join("one.pub");
    std::fs::write(&single, format!("{a}\n")).unwrap();
    assert_eq!(
        load_signer_policy(&single).unwrap(),
        SignerPolicy::single(a)
    );

    let policy = SignerPolicy::from_text(&format!(
        "nullos-signer-policy v1\nthreshold 2\nmember alice {a}\nmember bob {b}\n"
    ))
    .unwrap();
    let file = dir.path().join("policy");
    std::fs::write(&file, policy.to_text()).unwrap();
    assert_eq!(load_signer_policy(&file).unwrap(), policy);

    std::fs::write(&file, "nullos-signer-policy v1\nthreshold x\n").unwrap();
    let err = load_signer_policy(&file).unwrap_err();
    assert!(matches!(err, KeyFileError::ParsePolicy { .. }), "{err}");
    assert!(
        err.to_string().contains("is not a valid signer policy"),
        "{err}"
    );

    std::fs::write(&file, "neither\n").unwrap();
    let err = load_signer_policy(&file).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("policy is not a valid public key or signer policy"),
        "{err}"
    );
}

#[test]
fn machine_faults_are_not_bad_input() {
    let io = || std::io::Error::from(ErrorKind::PermissionDenied);
    assert!(!KeyFileError::Write {
        path: "k".into(),
        source: io()
    }
    .is_bad_input());
    assert!(!KeyFileError::CreateDir {
        path: "d".into(),
        source: io()
    }
    .is_bad_input());
    assert!(!KeyFileError::Random("none".into()).is_bad_input());
}
