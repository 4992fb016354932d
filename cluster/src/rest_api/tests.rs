//! The router driven in process against an in-memory cluster: the JSON shapes IPFS Cluster clients
//! parse, the error bodies and statuses, authentication, and the stream trailer.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cid::Cid;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use libp2p::PeerId;
use serde_json::Value;
use tower::ServiceExt;

use super::{BasicAuth, router};
use crate::api::{ClusterApi, ClusterError, ConnectGraph, PeerIdentity, PinOptions};
use crate::metric::Metric;
use crate::pin::{EcLayout, Pin};
use crate::status::{GlobalPinInfo, PeerPinInfo, PinStatus};

const CID: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
/// 2023-11-14T22:13:20Z.
const COMMITTED_AT: u64 = 1_700_000_000;

/// A one-peer cluster in memory, over a real node on a temporary repo (for `/add`).
struct Fake {
    me: PeerId,
    node: tessera_node::Node,
    pins: Mutex<BTreeMap<Cid, Pin>>,
    /// The options of every `pin` call, to check the query parsing.
    requests: Mutex<Vec<(Cid, PinOptions)>>,
    /// `status_all` yields its first status, then fails.
    break_status_all: bool,
    _repo: tempfile::TempDir,
}

impl Fake {
    fn new(break_status_all: bool) -> Arc<Fake> {
        let dir = tempfile::tempdir().unwrap();
        let repo = tessera_node::Repo::init(dir.path()).unwrap();
        let keypair = repo.keypair().unwrap();
        let store =
            tessera_blockstore::Blockstore::open(&repo.blocks_path(), Default::default()).unwrap();
        let dag = tessera_node::DagService::local(store.clone());
        let node = tessera_node::Node::new(
            repo.root(),
            repo.config().clone(),
            store,
            dag,
            keypair.public(),
        );
        Arc::new(Fake {
            me: node.peer_id(),
            node,
            pins: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
            break_status_all,
            _repo: dir,
        })
    }

    fn info(&self, cid: Cid) -> GlobalPinInfo {
        let pin = self.pins.lock().unwrap().get(&cid).cloned();
        let status = if pin.is_some() {
            PinStatus::Pinned
        } else {
            PinStatus::Unpinned
        };
        let mine = PeerPinInfo {
            peer: self.me,
            peer_name: "alpha".into(),
            status,
            error: String::new(),
            timestamp: COMMITTED_AT,
            attempt_count: 1,
            ipfs_addresses: vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", self.me)],
        };
        GlobalPinInfo {
            cid,
            pin,
            peer_map: BTreeMap::from([(self.me.to_string(), mine)]),
        }
    }
}

#[async_trait]
impl ClusterApi for Fake {
    async fn id(&self) -> PeerIdentity {
        PeerIdentity {
            peer: self.me,
            peer_name: "alpha".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            cluster_peers: vec![self.me],
            version: "0.1.0".into(),
            voter: true,
            error: None,
        }
    }

    async fn peers(&self) -> Vec<PeerIdentity> {
        let gone = PeerId::random();
        vec![
            self.id().await,
            PeerIdentity {
                peer: gone,
                peer_name: String::new(),
                addresses: Vec::new(),
                cluster_peers: Vec::new(),
                version: String::new(),
                voter: true,
                error: Some("unreachable".into()),
            },
        ]
    }

    async fn peer_remove(&self, peer: PeerId) -> Result<(), ClusterError> {
        if peer == self.me {
            Ok(())
        } else {
            Err(ClusterError::not_found(format!("{peer} is not a member")))
        }
    }

    async fn pin(&self, cid: Cid, options: PinOptions) -> Result<Pin, ClusterError> {
        self.requests.lock().unwrap().push((cid, options.clone()));
        let min = options.replication_min.unwrap_or(-1);
        let max = options.replication_max.unwrap_or(-1);
        if max != -1 && min > max {
            return Err(ClusterError::bad_request(
                "replication-min exceeds replication-max",
            ));
        }
        let mut pin = Pin::new(cid, min, max);
        pin.name = options.name;
        pin.mode = options.mode;
        pin.allocations = vec![self.me];
        pin.user_allocations = options.user_allocations;
        pin.metadata = options.metadata;
        pin.expire_at = options.expire_at;
        pin.timestamp = COMMITTED_AT;
        pin.ec = options.erasure.map(|(k, m)| EcLayout {
            k,
            m,
            manifest: cid,
            columns: vec![vec![self.me; usize::from(k + m)]],
            interior: vec![self.me],
        });
        self.pins.lock().unwrap().insert(cid, pin.clone());
        Ok(pin)
    }

    async fn unpin(&self, cid: Cid) -> Result<Pin, ClusterError> {
        self.pins
            .lock()
            .unwrap()
            .remove(&cid)
            .ok_or_else(|| ClusterError::not_found("not found"))
    }

    async fn allocation(&self, cid: Cid) -> Result<Option<Pin>, ClusterError> {
        Ok(self.pins.lock().unwrap().get(&cid).cloned())
    }

    fn allocations(&self) -> BoxStream<'static, Result<Pin, ClusterError>> {
        let pins: Vec<_> = self
            .pins
            .lock()
            .unwrap()
            .values()
            .cloned()
            .map(Ok)
            .collect();
        futures::stream::iter(pins).boxed()
    }

    async fn status(&self, cid: Cid, _local: bool) -> Result<GlobalPinInfo, ClusterError> {
        Ok(self.info(cid))
    }

    fn status_all(
        &self,
        filter: Vec<String>,
        _local: bool,
    ) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>> {
        let cids: Vec<Cid> = self.pins.lock().unwrap().keys().copied().collect();
        let mut infos: Vec<_> = cids
            .into_iter()
            .map(|c| self.info(c))
            .filter(|i| {
                filter.is_empty()
                    || i.peer_map
                        .values()
                        .any(|p| filter.iter().any(|w| p.status.matches_filter(w)))
            })
            .map(Ok)
            .collect();
        if self.break_status_all {
            infos.truncate(1);
            infos.push(Err(ClusterError::internal("peer beta stopped answering")));
        }
        futures::stream::iter(infos).boxed()
    }

    async fn recover(&self, cid: Cid, _local: bool) -> Result<GlobalPinInfo, ClusterError> {
        Ok(self.info(cid))
    }

    fn recover_all(&self, _local: bool) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>> {
        futures::stream::iter(vec![Err(ClusterError::internal("the tracker is stopped"))]).boxed()
    }

    async fn health_graph(&self) -> ConnectGraph {
        ConnectGraph {
            cluster_id: Some(self.me),
            cluster_links: BTreeMap::from([(self.me, Vec::new())]),
            errors: BTreeMap::new(),
        }
    }

    async fn metric_names(&self) -> Vec<String> {
        vec!["freespace".into(), "ping".into()]
    }

    async fn latest_metrics(&self, name: &str) -> Vec<Metric> {
        vec![Metric {
            name: name.to_string(),
            peer: self.me,
            value: "1000".into(),
            expire_at: 2_000_000_000_000_000_000,
            valid: true,
            received_at: 1_700_000_000_000_000_000,
        }]
    }

    fn node(&self) -> &tessera_node::Node {
        &self.node
    }
}

/// What a test looks at in an answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn lines(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn stream_error(&self) -> Option<String> {
        let t = self.trailers.as_ref()?;
        Some(t.get("x-stream-error")?.to_str().unwrap().to_string())
    }
}

async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status,
        headers,
        body: collected.to_bytes().to_vec(),
        trailers,
    }
}

async fn call(app: &axum::Router, method: Method, uri: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

fn app(fake: &Arc<Fake>) -> axum::Router {
    router(fake.clone(), None)
}

fn assert_error(answer: &Answer, status: StatusCode, contains: &str) {
    assert_eq!(
        answer.status,
        status,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["code"], status.as_u16());
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(contains), "{message}");
}

#[tokio::test]
async fn id_and_version_have_ipfs_cluster_fields() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let id = call(&app, Method::GET, "/id").await;
    assert_eq!(id.status, StatusCode::OK);
    let id = id.json();
    let me = fake.me.to_string();
    assert_eq!(id["id"], me);
    assert_eq!(id["peername"], "alpha");
    assert_eq!(id["version"], "0.1.0");
    assert_eq!(id["error"], "");
    assert_eq!(id["cluster_peers"], serde_json::json!([me]));
    assert_eq!(
        id["addresses"],
        serde_json::json!([format!("/ip4/127.0.0.1/tcp/4001/p2p/{me}")])
    );
    assert_eq!(id["ipfs"]["id"], me);
    for field in ["commit", "rpc_protocol_version", "cluster_peers_addresses"] {
        assert!(id.get(field).is_some(), "{field}");
    }
    let version = call(&app, Method::GET, "/version").await.json();
    assert_eq!(version, serde_json::json!({"version": "0.1.0"}));
}

#[tokio::test]
async fn peers_stream_as_ndjson_with_an_empty_trailer() {
    let fake = Fake::new(false);
    let answer = call(&app(&fake), Method::GET, "/peers").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::TRAILER], "X-Stream-Error");
    let peers = answer.lines();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0]["id"], fake.me.to_string());
    assert_eq!(peers[1]["error"], "unreachable");
    assert_eq!(answer.stream_error().as_deref(), Some(""));
}

#[tokio::test]
async fn removing_a_peer_answers_204_and_a_bad_peer_id_400() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let ok = call(&app, Method::DELETE, &format!("/peers/{}", fake.me)).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let bad = call(&app, Method::DELETE, "/peers/nope").await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "error decoding Peer ID");
    let stranger = call(
        &app,
        Method::DELETE,
        &format!("/peers/{}", PeerId::random()),
    )
    .await;
    assert_error(&stranger, StatusCode::NOT_FOUND, "not a member");
}

#[tokio::test]
async fn pin_reads_every_option_and_answers_the_pin_json() {
    let fake = Fake::new(false);
    let me = fake.me.to_string();
    let uri = format!(
        "/pins/{CID}?name=photos&replication-min=1&replication-max=2&mode=recursive\
         &shard-size=100&user-allocations={me}&expire-in=1h30m&meta-owner=ana&meta-kind=jpg\
         &pin-update={CID}&data-shards=2&parity-shards=1"
    );
    let answer = call(&app(&fake), Method::POST, &uri).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let pin = answer.json();
    assert_eq!(pin["cid"], CID);
    assert_eq!(pin["type"], "pin");
    assert_eq!(pin["name"], "photos");
    assert_eq!(pin["mode"], "recursive");
    assert_eq!(pin["max_depth"], -1);
    assert_eq!(pin["replication_factor_min"], 1);
    assert_eq!(pin["replication_factor_max"], 2);
    assert_eq!(pin["allocations"], serde_json::json!([me]));
    assert_eq!(pin["user_allocations"], serde_json::json!([me]));
    assert_eq!(
        pin["metadata"],
        serde_json::json!({"owner": "ana", "kind": "jpg"})
    );
    assert_eq!(pin["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(pin["reference"], Value::Null);
    assert_eq!(pin["pin_update"], Value::Null);
    assert_eq!(pin["shard_size"], 0);
    assert_eq!(pin["origins"], serde_json::json!([]));
    assert_eq!(pin["erasure"]["data_shards"], 2);
    assert_eq!(pin["erasure"]["parity_shards"], 1);
    assert_eq!(pin["erasure"]["columns"][0].as_array().unwrap().len(), 3);
    let expire = pin["expire_at"].as_str().unwrap();
    assert!(
        expire.ends_with('Z') && !expire.starts_with("0001"),
        "{expire}"
    );

    let (cid, options) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(cid.to_string(), CID);
    assert_eq!(options.erasure, Some((2, 1)));
    assert_eq!(
        options.pin_update.map(|c| c.to_string()).as_deref(),
        Some(CID)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expire_at = options.expire_at.unwrap();
    assert!(expire_at.abs_diff(now + 5400) <= 5, "{expire_at} vs {now}");
}

#[tokio::test]
async fn a_plain_pin_has_go_zero_times_and_no_erasure() {
    let fake = Fake::new(false);
    let pin = call(
        &app(&fake),
        Method::POST,
        &format!("/pins/{CID}?mode=direct"),
    )
    .await
    .json();
    assert_eq!(pin["expire_at"], "0001-01-01T00:00:00Z");
    assert_eq!(pin["max_depth"], 0);
    assert_eq!(pin["mode"], "direct");
    assert!(pin.get("erasure").is_none());
    let (_, options) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(
        options.replication_min, None,
        "absent means the cluster's default"
    );
}

#[tokio::test]
async fn bad_input_is_a_400_with_ipfs_cluster_body() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let cases = [
        (
            Method::POST,
            "/pins/not-a-cid".to_string(),
            "error decoding Cid",
        ),
        (
            Method::GET,
            "/pins/not-a-cid".to_string(),
            "error decoding Cid",
        ),
        (
            Method::DELETE,
            "/pins/zzz".to_string(),
            "error decoding Cid",
        ),
        (
            Method::GET,
            "/allocations/zzz".to_string(),
            "error decoding Cid",
        ),
        (
            Method::GET,
            "/pins?filter=pinned,bogus".to_string(),
            "bogus",
        ),
        (
            Method::GET,
            "/pins?cids=bogus".to_string(),
            "error decoding Cid",
        ),
        (
            Method::GET,
            "/allocations?filter=bogus".to_string(),
            "bogus",
        ),
        (Method::GET, "/pins?local=maybe".to_string(), "local"),
        (
            Method::POST,
            format!("/pins/{CID}?replication-min=x"),
            "replication-min",
        ),
        (Method::POST, format!("/pins/{CID}?mode=deep"), "mode"),
        (
            Method::POST,
            format!("/pins/{CID}?expire-in=10ms"),
            "too short",
        ),
        (
            Method::POST,
            format!("/pins/{CID}?expire-at=tomorrow"),
            "expire-at",
        ),
        (
            Method::POST,
            format!("/pins/{CID}?data-shards=4"),
            "parity-shards",
        ),
        (
            Method::POST,
            format!("/pins/{CID}?data-shards=0&parity-shards=1"),
            "data-shards",
        ),
        (
            Method::POST,
            format!("/pins/{CID}?user-allocations=abc"),
            "user-allocations",
        ),
        (
            Method::POST,
            format!("/pins/{CID}?origins=/ip4/1.2.3.4/tcp/1"),
            "peer ID",
        ),
        (
            Method::POST,
            format!("/pins/ipfs/{CID}/a/b"),
            "paths below a CID",
        ),
        (Method::POST, "/pins/ipns/example.com".to_string(), "IPNS"),
    ];
    for (method, uri, contains) in cases {
        let answer = call(&app, method.clone(), &uri).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, contains);
    }
    // The trait's own refusal keeps its status.
    let refused = call(
        &app,
        Method::POST,
        &format!("/pins/{CID}?replication-min=3&replication-max=2"),
    )
    .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "exceeds");
}

#[tokio::test]
async fn missing_pins_and_unknown_paths_are_404s() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let absent = call(&app, Method::GET, &format!("/allocations/{CID}")).await;
    assert_error(&absent, StatusCode::NOT_FOUND, "not found");
    let unpin = call(&app, Method::DELETE, &format!("/pins/{CID}")).await;
    assert_error(&unpin, StatusCode::NOT_FOUND, "not found");
    let unknown = call(&app, Method::GET, "/nowhere").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not found");
    let wrong_method = call(&app, Method::PUT, "/id").await;
    assert_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method");
    let gc = call(&app, Method::POST, "/ipfs/gc").await;
    assert_error(&gc, StatusCode::NOT_IMPLEMENTED, "not supported");
}

#[tokio::test]
async fn a_trailing_slash_is_redirected_keeping_the_method() {
    let fake = Fake::new(false);
    let answer = call(&app(&fake), Method::POST, &format!("/pins/{CID}/?name=x")).await;
    assert_eq!(answer.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        answer.headers[header::LOCATION],
        format!("/pins/{CID}?name=x").as_str()
    );
}

#[tokio::test]
async fn pinset_round_trip_allocation_status_unpin() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let me = fake.me.to_string();
    let pinned = call(&app, Method::POST, &format!("/pins/ipfs/{CID}?name=n")).await;
    assert_eq!(pinned.status, StatusCode::OK);

    let allocation = call(&app, Method::GET, &format!("/allocations/{CID}"))
        .await
        .json();
    assert_eq!(allocation["cid"], CID);
    assert_eq!(allocation["allocations"], serde_json::json!([me]));

    let all = call(&app, Method::GET, "/allocations?filter=pin").await;
    assert_eq!(all.lines().len(), 1);
    assert_eq!(all.stream_error().as_deref(), Some(""));
    let none = call(&app, Method::GET, "/allocations?filter=meta-pin").await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);

    let status = call(&app, Method::GET, &format!("/pins/{CID}?local=true"))
        .await
        .json();
    assert_eq!(status["cid"], CID);
    assert_eq!(status["name"], "n");
    assert_eq!(status["created"], "2023-11-14T22:13:20Z");
    assert_eq!(status["allocations"], serde_json::json!([me]));
    assert_eq!(status["origins"], serde_json::json!([]));
    assert_eq!(status["metadata"], serde_json::json!({}));
    let mine = &status["peer_map"][&me];
    assert_eq!(mine["peername"], "alpha");
    assert_eq!(mine["ipfs_peer_id"], me);
    assert_eq!(mine["status"], "pinned");
    assert_eq!(mine["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(mine["error"], "");
    assert_eq!(mine["attempt_count"], 1);
    assert_eq!(mine["priority_pin"], false);
    assert_eq!(mine["ipfs_peer_addresses"].as_array().unwrap().len(), 1);

    let listed = call(&app, Method::GET, &format!("/pins?cids={CID}"))
        .await
        .lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["cid"], CID);
    let filtered = call(&app, Method::GET, "/pins?filter=pinned,queued")
        .await
        .lines();
    assert_eq!(filtered.len(), 1);
    let nothing = call(&app, Method::GET, "/pins?filter=pin_error").await;
    assert_eq!(nothing.status, StatusCode::NO_CONTENT);
    let sharded = call(&app, Method::GET, "/pins?filter=sharded").await;
    assert_eq!(sharded.status, StatusCode::NO_CONTENT);

    let recovered = call(&app, Method::POST, &format!("/pins/{CID}/recover")).await;
    assert_eq!(recovered.json()["peer_map"][&me]["status"], "pinned");

    let removed = call(&app, Method::DELETE, &format!("/pins/{CID}"))
        .await
        .json();
    assert_eq!(removed["cid"], CID);
    let after = call(&app, Method::GET, &format!("/pins/{CID}"))
        .await
        .json();
    assert_eq!(after["peer_map"][&me]["status"], "unpinned");
    assert_eq!(after["created"], "0001-01-01T00:00:00Z");
}

#[tokio::test]
async fn a_stream_that_fails_midway_sets_the_trailer() {
    let fake = Fake::new(true);
    let app = app(&fake);
    call(&app, Method::POST, &format!("/pins/{CID}")).await;
    call(
        &app,
        Method::POST,
        "/pins/bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
    )
    .await;
    let answer = call(&app, Method::GET, "/pins").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.lines().len(), 1, "the line before the failure");
    assert_eq!(
        answer.stream_error().as_deref(),
        Some("peer beta stopped answering")
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_item_is_an_error_answer() {
    let fake = Fake::new(false);
    let answer = call(&app(&fake), Method::POST, "/pins/recover").await;
    assert_error(
        &answer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "tracker is stopped",
    );
}

#[tokio::test]
async fn health_and_monitor_shapes() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let me = fake.me.to_string();
    assert_eq!(
        call(&app, Method::GET, "/health").await.status,
        StatusCode::NO_CONTENT
    );
    let graph = call(&app, Method::GET, "/health/graph").await.json();
    assert_eq!(graph["cluster_id"], me);
    assert_eq!(graph["cluster_links"][&me], serde_json::json!([]));
    assert_eq!(graph["id_to_peername"][&me], "alpha");
    assert_eq!(graph["cluster_to_ipfs"][&me], me);
    assert_eq!(
        call(&app, Method::GET, "/health/alerts").await.json(),
        serde_json::json!([])
    );
    assert_eq!(
        call(&app, Method::GET, "/monitor/metrics").await.json(),
        serde_json::json!(["freespace", "ping"])
    );
    let metrics = call(&app, Method::GET, "/monitor/metrics/freespace")
        .await
        .json();
    let m = &metrics[0];
    assert_eq!(m["name"], "freespace");
    assert_eq!(m["peer"], me);
    assert_eq!(m["value"], "1000");
    assert_eq!(m["expire"], 2_000_000_000_000_000_000_i64);
    assert_eq!(m["valid"], true);
    assert_eq!(m["weight"], 1000);
    assert_eq!(m["partitionable"], false);
    assert_eq!(m["received_at"], 1_700_000_000_000_000_000_i64);
}

#[tokio::test]
async fn authentication_guards_everything_but_health() {
    let fake = Fake::new(false);
    let auth = BasicAuth {
        user: "ana".into(),
        password: "s3cret".into(),
    };
    let app = router(fake.clone(), Some(auth));
    let with = |value: &str| {
        Request::builder()
            .uri("/id")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    let none = call(&app, Method::GET, "/id").await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "no auth provided");
    assert_eq!(
        none.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .count(),
        2
    );
    // base64("ana:wrong") and base64("ana:s3cret")
    let wrong = send(&app, with("Basic YW5hOndyb25n")).await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "access denied");
    let token = send(&app, with("Bearer abc")).await;
    assert_error(&token, StatusCode::UNAUTHORIZED, "invalid token");
    let unknown = call(&app, Method::GET, "/nowhere").await;
    assert_eq!(
        unknown.status,
        StatusCode::UNAUTHORIZED,
        "no path is revealed"
    );
    let right = send(&app, with("basic YW5hOnMzY3JldA==")).await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(
        call(&app, Method::GET, "/health").await.status,
        StatusCode::NO_CONTENT
    );
}

/// A multipart body as Kubo's and IPFS Cluster's clients send a file.
fn upload(uri: &str, files: &[(&str, &[u8])]) -> Request<Body> {
    let boundary = "tessera-test-boundary";
    let mut body = Vec::new();
    for (name, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn add_streams_added_outputs_and_pins_the_root() {
    let fake = Fake::new(false);
    let app = app(&fake);
    let answer = send(
        &app,
        upload(
            "/add?name=greeting&replication-min=1&replication-max=1",
            &[("hello.txt", b"hello world\n")],
        ),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let lines = answer.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The CID Kubo gives `hello world\n` with its defaults.
    assert_eq!(lines[0]["cid"], CID);
    assert_eq!(lines[0]["name"], "hello.txt");
    assert_eq!(lines[0]["size"], 20);
    assert_eq!(
        lines[0]["allocations"],
        serde_json::json!([fake.me.to_string()])
    );
    assert_eq!(answer.stream_error().as_deref(), Some(""));
    let (cid, options) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(cid.to_string(), CID);
    assert_eq!(options.name, "greeting");
    assert_eq!(options.replication_min, Some(1));
}

#[tokio::test]
async fn add_without_stream_channels_answers_one_array() {
    let fake = Fake::new(false);
    // The JS client's defaults.
    let uri = "/add?stream-channels=false&raw-leaves=true&cid-version=1";
    let answer = send(&app(&fake), upload(uri, &[("a.txt", b"hello world\n")])).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let all = answer.json();
    let first = &all[0];
    assert!(
        first["cid"].as_str().unwrap().starts_with("bafkrei"),
        "{first}"
    );
    assert_eq!(first["name"], "a.txt");
    assert!(answer.trailers.is_none());
}

#[tokio::test]
async fn add_wrapped_reports_entries_then_the_pinned_wrapper() {
    let fake = Fake::new(false);
    let answer = send(
        &app(&fake),
        upload(
            "/add?wrap-with-directory=true",
            &[("a.txt", b"A"), ("b.txt", b"B")],
        ),
    )
    .await;
    let lines = answer.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].get("allocations").is_none());
    assert_eq!(lines[2]["name"], "");
    assert_eq!(lines[2]["allocations"].as_array().unwrap().len(), 1);
    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "only the wrapper is pinned");
    assert_eq!(requests[0].0.to_string(), lines[2]["cid"].as_str().unwrap());
}

#[tokio::test]
async fn add_refuses_what_tessera_cannot_do() {
    let fake = Fake::new(false);
    let app = app(&fake);
    for (query, contains) in [
        ("shard=true", "sharded"),
        ("format=car", "car"),
        ("layout=trickle", "trickle"),
        ("hash=blake2b-256", "hash"),
        ("chunker=rabin", "chunker"),
        ("cid-version=2", "CID version"),
    ] {
        let answer = send(&app, upload(&format!("/add?{query}"), &[("a", b"A")])).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, contains);
    }
    let not_multipart = call(&app, Method::POST, "/add").await;
    assert_error(&not_multipart, StatusCode::BAD_REQUEST, "multipart");
}

#[tokio::test]
async fn add_failing_at_pin_time_sets_the_trailer() {
    let fake = Fake::new(false);
    let answer = send(
        &app(&fake),
        upload("/add?replication-min=3&replication-max=2", &[("a", b"A")]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.lines().is_empty());
    assert!(answer.stream_error().unwrap().contains("exceeds"));
}
