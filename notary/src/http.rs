//! The HTTP layer: routes decode requests, call the [`Notary`] core (on the blocking pool, since
//! the store blocks), and encode answers. Reads answer JSON (proofs as base64 hashes, entries as
//! base64 bytes), checkpoints the signed note text; writes take the canonical signed bytes.
//! Every refusal is a 4xx with a one-line plain-text reason.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | the explorer page (HTML) |
//! | GET | `/v1/checkpoint` | the latest signed checkpoint note |
//! | POST | `/v1/documents` | `{index, size, proof, checkpoint}` |
//! | GET | `/v1/entries/{index}` | the entry's bytes |
//! | GET | `/v1/proof/inclusion?index=&size=` | `{index, size, proof}` |
//! | GET | `/v1/proof/consistency?from=&to=` | `{from, to, proof}` |
//! | PUT | `/v1/blobs/{blake3}` | `{digest, len}` (201) |
//! | GET | `/v1/blobs/{blake3}` | the blob's bytes |
//! | GET | `/v1/wait?key=&after=&timeout=` | `{size, entries: [{index, data}]}` |

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use trust::limits::MAX_DOCUMENT_BYTES;
use trust::Digest;

use crate::core::{Accepted, Notary, ReadError, SubmitError, MAX_LOOKUP};
use crate::directory as dir;
use crate::grid::unix_now;
use crate::store::StoreError;
use crate::store::{BlobError, CHUNK_BYTES};
use trust::grid::ContractId;
use trust::PublicKey;

/// The longest a long-poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The wait when the request names none.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(25);

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest blob accepted.
    pub max_blob_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_blob_bytes: 1 << 30,
        }
    }
}

#[derive(Clone)]
struct App {
    notary: Arc<Notary>,
    waiters: Arc<Waiters>,
    limits: Limits,
}

/// Long-polls waiting, by key, so a publish wakes only the polls its entries concern.
#[derive(Default)]
struct Waiters {
    by_key: std::sync::Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    /// Woken when the new entries' keys are unknown (another notary appended them).
    everyone: Notify,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Notify>, usize)>> {
        self.by_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(self: &Arc<Self>, key: &str) -> Registration {
        let mut map = self.lock();
        let slot = map
            .entry(key.to_string())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        slot.1 += 1;
        Registration {
            waiters: Arc::clone(self),
            key: key.to_string(),
            notify: Arc::clone(&slot.0),
        }
    }

    fn wake(&self, keys: Option<&[String]>) {
        match keys {
            None => self.everyone.notify_waiters(),
            Some(keys) => {
                let map = self.lock();
                for key in keys {
                    if let Some((notify, _)) = map.get(key) {
                        notify.notify_waiters();
                    }
                }
            }
        }
    }
}

/// One long-poll's place in [`Waiters`]; leaving removes it.
struct Registration {
    waiters: Arc<Waiters>,
    key: String,
    notify: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(slot) = map.get_mut(&self.key) {
            slot.1 -= 1;
            if slot.1 == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The routes over `notary`.
pub fn router(notary: Arc<Notary>, limits: Limits) -> Router {
    let waiters = Arc::new(Waiters::default());
    {
        let waiters = Arc::clone(&waiters);
        notary.on_publish(move |_, keys| waiters.wake(keys));
    }
    let app = App {
        notary,
        waiters,
        limits,
    };
    Router::new()
        .route("/", get(explorer))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/documents", post(submit))
        .route("/v1/entries/{index}", get(entry))
        .route("/v1/proof/inclusion", get(inclusion))
        .route("/v1/proof/consistency", get(consistency))
        .route("/v1/blobs/{digest}", put(put_blob).get(get_blob))
        .route("/v1/wait", get(wait))
        .route("/v1/nodes", get(nodes))
        .route("/v1/farms", get(farms))
        .route("/v1/contracts", get(contracts))
        .route("/v1/contracts/{id}", get(contract))
        .with_state(app)
}

/// A plain-text answer of one line.
fn line(status: StatusCode, text: impl std::fmt::Display) -> Response {
    let text = text.to_string().replace(['\n', '\r'], " ");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

fn internal(e: impl std::error::Error) -> Response {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    line(StatusCode::INTERNAL_SERVER_ERROR, text)
}

fn read_error(e: ReadError) -> Response {
    match e {
        ReadError::Tree(e) => line(StatusCode::BAD_REQUEST, e),
        ReadError::Store(e) => internal(e),
    }
}

fn json_ok(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value}\n"),
    )
        .into_response()
}

fn hashes(proof: &[tlog::Hash]) -> Vec<String> {
    proof.iter().map(tlog::Hash::to_base64).collect()
}

/// Runs blocking core work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        line(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        )
    })
}

type Params = Query<HashMap<String, String>>;

/// A 400 with a one-line reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        line(StatusCode::BAD_REQUEST, self.0)
    }
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, BadRequest> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            BadRequest(format!(
                "query parameter '{name}' must be a non-negative integer"
            ))
        }),
    }
}

fn required(params: &HashMap<String, String>, name: &str) -> Result<u64, BadRequest> {
    number(params, name)?.ok_or_else(|| BadRequest(format!("query parameter '{name}' is required")))
}

async fn checkpoint(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        app.notary.checkpoint(),
    )
        .into_response()
}

/// How much of a body over its limit is still read (and dropped) so the refusal reaches the
/// client: a connection closed with unread bytes is reset, and a client still sending would see
/// a broken pipe instead of the 413. Past this the connection is dropped.
const DRAIN_MAX_BYTES: usize = 4 << 20;

/// Why a request body was not taken.
enum BodyRefused {
    /// Longer than allowed (read on and dropped up to [`DRAIN_MAX_BYTES`]).
    TooLarge,
    /// The client's body broke off.
    Broken(axum::Error),
}

/// The request body if it is at most `max` bytes.
async fn body_within(body: Body, max: usize) -> Result<Vec<u8>, BodyRefused> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyRefused::Broken)?;
        total = total.saturating_add(chunk.len());
        if total <= max {
            bytes.extend_from_slice(&chunk);
        } else if total > DRAIN_MAX_BYTES {
            return Err(BodyRefused::TooLarge);
        }
    }
    if total > max {
        return Err(BodyRefused::TooLarge);
    }
    Ok(bytes)
}

async fn submit(State(app): State<App>, body: Body) -> Response {
    let bytes = match body_within(body, MAX_DOCUMENT_BYTES).await {
        Ok(b) => b,
        Err(BodyRefused::TooLarge) => {
            return line(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("document is over the {MAX_DOCUMENT_BYTES}-byte limit"),
            )
        }
        Err(BodyRefused::Broken(e)) => {
            return line(
                StatusCode::BAD_REQUEST,
                format!("document body broke off: {e}"),
            )
        }
    };
    let notary = Arc::clone(&app.notary);
    match blocking(move || notary.accept(bytes)).await {
        Err(r) => r,
        Ok(Ok(Accepted::Lease(lease))) => json_ok(
            StatusCode::OK,
            json!({
                "lease": {
                    "node": hex::encode(lease.node),
                    "sequence": lease.sequence,
                    "expires": lease.expires,
                },
            }),
        ),
        Ok(Ok(Accepted::Logged(receipt))) => json_ok(
            StatusCode::OK,
            json!({
                "index": receipt.index,
                "size": receipt.size,
                "proof": hashes(&receipt.proof),
                "checkpoint": receipt.checkpoint,
            }),
        ),
        Ok(Err(SubmitError::Refused(reason))) => line(StatusCode::BAD_REQUEST, reason),
        Ok(Err(e @ (SubmitError::Busy | SubmitError::Closed))) => {
            line(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        Ok(Err(e @ SubmitError::Store(_))) => internal(e),
    }
}

async fn entry(State(app): State<App>, Path(index): Path<String>) -> Response {
    let Ok(index) = index.parse::<u64>() else {
        return line(
            StatusCode::BAD_REQUEST,
            "entry index must be a non-negative integer",
        );
    };
    let notary = Arc::clone(&app.notary);
    match blocking(move || notary.entry(index)).await {
        Err(r) => r,
        Ok(Ok(Some(bytes))) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(Ok(None)) => line(StatusCode::NOT_FOUND, format!("no entry {index}")),
        Ok(Err(e)) => read_error(e),
    }
}

async fn inclusion(State(app): State<App>, Query(params): Params) -> Response {
    let (index, size) = match (required(&params, "index"), number(&params, "size")) {
        (Ok(i), Ok(s)) => (i, s.unwrap_or_else(|| app.notary.size())),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    match app.notary.inclusion_proof(index, size) {
        Ok(proof) => json_ok(
            StatusCode::OK,
            json!({"index": index, "size": size, "proof": hashes(&proof)}),
        ),
        Err(e) => read_error(e),
    }
}

async fn consistency(State(app): State<App>, Query(params): Params) -> Response {
    let (from, to) = match (required(&params, "from"), number(&params, "to")) {
        (Ok(f), Ok(t)) => (f, t.unwrap_or_else(|| app.notary.size())),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    match app.notary.consistency_proof(from, to) {
        Ok(proof) => json_ok(
            StatusCode::OK,
            json!({"from": from, "to": to, "proof": hashes(&proof)}),
        ),
        Err(e) => read_error(e),
    }
}

fn parse_digest(text: &str) -> Result<Digest, BadRequest> {
    Digest::from_hex(text)
        .map_err(|_| BadRequest("blob name must be its BLAKE3 digest, 64 hex characters".into()))
}

/// The async request body seen as a blocking reader (fed chunk by chunk through a channel).
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

async fn put_blob(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let digest = match parse_digest(&name) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let max = app.limits.max_blob_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return line(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("blob is over the {max}-byte limit"),
        );
    }
    let (tx, rx) = mpsc::channel(8);
    let notary = Arc::clone(&app.notary);
    let job = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
        };
        notary.store().put_blob(&digest, &mut reader, max)
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other);
        let failed = chunk.is_err();
        // A closed channel means the store stopped reading (too large): stop sending.
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    match job.await {
        Err(e) => line(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        ),
        Ok(Ok(len)) => json_ok(
            StatusCode::CREATED,
            json!({"digest": digest.to_hex(), "len": len}),
        ),
        Ok(Err(e @ BlobError::TooLarge { .. })) => line(StatusCode::PAYLOAD_TOO_LARGE, e),
        Ok(Err(e @ (BlobError::DigestMismatch { .. } | BlobError::Read(_)))) => {
            line(StatusCode::BAD_REQUEST, e)
        }
        Ok(Err(BlobError::Store(e))) => internal(e),
    }
}

async fn get_blob(State(app): State<App>, Path(name): Path<String>) -> Response {
    let digest = match parse_digest(&name) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let notary = Arc::clone(&app.notary);
    let blob = match blocking(move || notary.store().get_blob(&digest)).await {
        Err(r) => return r,
        Ok(Err(e)) => return internal(e),
        Ok(Ok(None)) => return line(StatusCode::NOT_FOUND, format!("no blob {digest}")),
        Ok(Ok(Some(blob))) => blob,
    };
    let len = blob.len;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = blob.reader;
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let chunk = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn wait(State(app): State<App>, Query(params): Params) -> Response {
    let Some(key) = params.get("key").cloned() else {
        return line(StatusCode::BAD_REQUEST, "query parameter 'key' is required");
    };
    if key.is_empty() || key.len() > crate::store::MAX_KEY_BYTES {
        return line(
            StatusCode::BAD_REQUEST,
            format!(
                "query parameter 'key' must be 1 to {} bytes",
                crate::store::MAX_KEY_BYTES
            ),
        );
    }
    let (after, timeout) = match (number(&params, "after"), number(&params, "timeout")) {
        (Ok(a), Ok(t)) => (a, t.map_or(DEFAULT_WAIT, Duration::from_secs).min(MAX_WAIT)),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let registration = app.waiters.register(&key);
    loop {
        // Listen before looking, so a publish between the lookup and the sleep is not missed.
        let mine = registration.notify.notified();
        let anyone = app.waiters.everyone.notified();
        tokio::pin!(mine, anyone);
        mine.as_mut().enable();
        anyone.as_mut().enable();
        let notary = Arc::clone(&app.notary);
        let lookup_key = key.clone();
        let found = match blocking(move || notary.lookup(&lookup_key, after, MAX_LOOKUP)).await {
            Err(r) => return r,
            Ok(Err(e)) => return read_error(e),
            Ok(Ok(found)) => found,
        };
        let woke = found.is_empty()
            && tokio::select! {
                _ = &mut mine => true,
                _ = &mut anyone => true,
                _ = tokio::time::sleep_until(deadline) => false,
            };
        if !woke {
            let entries: Vec<_> = found
                .iter()
                .map(|(index, data)| json!({"index": index, "data": STANDARD.encode(data)}))
                .collect();
            return json_ok(
                StatusCode::OK,
                json!({"size": app.notary.size(), "entries": entries}),
            );
        }
    }
}

/// Runs a directory read on the blocking pool and answers its JSON.
async fn directory(
    app: &App,
    read: impl FnOnce(&Notary) -> Result<Option<serde_json::Value>, StoreError> + Send + 'static,
) -> Response {
    let notary = Arc::clone(&app.notary);
    match blocking(move || read(&notary)).await {
        Err(r) => r,
        Ok(Ok(Some(value))) => json_ok(StatusCode::OK, value),
        Ok(Ok(None)) => line(StatusCode::NOT_FOUND, "no such contract"),
        Ok(Err(e)) => internal(e),
    }
}

async fn nodes(State(app): State<App>) -> Response {
    directory(&app, |n| {
        let nodes = dir::nodes(&n.view(), unix_now())?;
        Ok(Some(json!({
            "nodes": nodes.iter().map(dir::NodeInfo::to_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

async fn farms(State(app): State<App>) -> Response {
    directory(&app, |n| {
        let view = n.view();
        let nodes = dir::nodes(&view, unix_now())?;
        let farms = dir::farms(&view, &nodes)?;
        Ok(Some(json!({
            "farms": farms.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        })))
    })
    .await
}

fn parse_key(text: &str, what: &str) -> Result<PublicKey, BadRequest> {
    let bytes: [u8; 32] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| BadRequest(format!("{what} must be 64 hex digits")))?;
    PublicKey::from_bytes(&bytes).map_err(|_| BadRequest(format!("{what} is not a usable key")))
}

async fn contracts(State(app): State<App>, Query(params): Params) -> Response {
    let owner = match params
        .get("owner")
        .map(|o| parse_key(o, "owner"))
        .transpose()
    {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    directory(&app, move |n| {
        let view = n.view();
        let mut out = Vec::new();
        for id in dir::contract_ids(&view, owner.as_ref())? {
            if let Some(info) = dir::contract(&view, &id)? {
                out.push(info.to_json());
            }
        }
        Ok(Some(json!({ "contracts": out })))
    })
    .await
}

async fn contract(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = Digest::from_hex(&id).map(ContractId) else {
        return line(
            StatusCode::BAD_REQUEST,
            "a contract id is a BLAKE3 digest, 64 hex characters",
        );
    };
    directory(&app, move |n| {
        Ok(dir::contract(&n.view(), &id)?.map(|c| c.to_json()))
    })
    .await
}

async fn explorer(State(app): State<App>) -> Response {
    let notary = Arc::clone(&app.notary);
    match blocking(move || crate::explorer::page(&notary, unix_now())).await {
        Err(r) => r,
        Ok(Ok(page)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        Ok(Err(e)) => internal(e),
    }
}
