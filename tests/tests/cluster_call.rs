//! Calls whose peers sit on different nodes of a cluster: a real `redis-server` of the test's
//! own and real node processes.

mod cluster;

use serde_json::json;
use switchboard_tests::V1Peer;

use cluster::Cluster;
use cluster::members::{answer, candidate, offer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_two_nodes_completes_in_order() {
    let c = Cluster::start(2, &[]);
    let mut a = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    let joined = a.join("x-call").await;
    assert_eq!(joined["peers"], json!([]));
    let joined = b.join("x-call").await;
    assert_eq!(joined["peers"][0]["peer_id"], json!(a.id), "{joined}");
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"]["peer_id"], json!(b.id));

    // Offer then a burst of candidates: the candidates never overtake the offer.
    a.signal("x-call", &b.id, offer()).await;
    for i in 0..30 {
        a.signal("x-call", &b.id, candidate(i)).await;
    }
    let offer = b.ws.expect("signal").await;
    assert_eq!(offer["from"], json!(a.id));
    assert_eq!(offer["data"]["type"], "offer");
    for i in 0..30 {
        let c = b.ws.expect("signal").await;
        assert_eq!(c["data"], candidate(i), "candidate {i} out of order");
    }
    b.signal("x-call", &a.id, answer()).await;
    for i in 0..5 {
        b.signal("x-call", &a.id, candidate(100 + i)).await;
    }
    let answer = a.ws.expect("signal").await;
    assert_eq!(answer["data"]["type"], "answer");
    for i in 0..5 {
        assert_eq!(a.ws.expect("signal").await["data"], candidate(100 + i));
    }

    // Broadcast crosses too, and hanging up is seen on the other node.
    b.ws.send_json(json!({"type": "broadcast", "room": "x-call", "data": {"chat": "hi"}})).await;
    assert_eq!(a.ws.expect("broadcast").await["data"], json!({"chat": "hi"}));
    b.ws.send_json(json!({"type": "leave", "room": "x-call"})).await;
    let left = a.ws.expect("peer-left").await;
    assert_eq!((left["peer_id"].clone(), left["reason"].clone()), (json!(b.id), json!("left")));
}
