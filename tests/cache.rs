//! End-to-end: the cache in front of a real origin process that counts its requests.

mod support;

use futures_util::future::join_all;
use std::time::{Duration, Instant};
use support::clients::{self, Answer, Proto, ALL};
use support::{Node, Origin};

const TOKEN: &str = "test-admin-token-0123456789";

fn cached_node(origin: &Origin, extra: &str) -> Node {
    Node::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n{extra}\n\
         [origins.media]\nprimary = \"{}\"\n\n[[routes]]\norigin = \"media\"\n\
         [routes.cache]\nexclude_query = [\"token\", \"exp\"]\n",
        origin.url
    ))
}

async fn origin_count(origin: &Origin, path: &str) -> u64 {
    let body = origin.direct(&format!("/counts?path={path}")).await;
    std::str::from_utf8(&body).unwrap().trim().parse().unwrap()
}

/// One metric's value from the node's `/metrics`.
async fn metrics(node: &Node) -> impl Fn(&str) -> f64 {
    let admin = node.proc.ready["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&admin).await.unwrap();
    let text = clients::exchange(
        &mut tcp,
        format!("GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    move |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    }
}

fn x_cache(a: &Answer) -> &str {
    a.headers
        .get("x-cache")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn get(node: &Node, proto: Proto, path: &str, headers: &[(&str, &str)]) -> Answer {
    clients::get(proto, &node.ca, &node.url(path), headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_with_age_over_every_protocol() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let path = "/object/a?cc=max-age%3D60&size=5000";
    let first = get(&node, Proto::H1, path, &[]).await;
    assert_eq!((first.status.as_u16(), x_cache(&first)), (200, "MISS"));
    for proto in ALL {
        let hit = get(&node, proto, path, &[]).await;
        assert_eq!(hit.status, 200);
        assert_eq!(x_cache(&hit), "HIT", "{proto:?}");
        assert_eq!(hit.body, first.body, "{proto:?}");
        assert!(hit.headers["age"].to_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(hit.headers["content-length"], "5000");
    }
    assert_eq!(origin_count(&origin, "/object/a").await, 1);
    let line = node.wait_for_access(|l| l["cache"] == "HIT" && l["protocol"] == "h3");
    assert_eq!(line["bytes"], 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_viewers_make_one_origin_request_and_stream() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    // 320 KiB in 20 chunks 50 ms apart: the fill takes about a second.
    let path = "/object/storm?cc=max-age%3D60&size=327680&delay_ms=200&chunk_ms=50";
    let started = Instant::now();
    let viewers = (0..100).map(|i| {
        let proto = ALL[i % 3];
        let (ca, url) = (node.ca.clone(), node.url(path));
        async move { clients::get(proto, &ca, &url, &[]).await }
    });
    let answers = join_all(viewers).await;
    let expected = origin.direct("/object/storm?size=327680").await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "viewer {i}");
        assert_eq!(a.body, expected, "viewer {i} got different bytes");
    }
    assert_eq!(
        origin_count(&origin, "/object/storm").await,
        2,
        "one fill plus our direct read"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // Streaming: a waiter gets its first bytes long before the fill completes.
    let path = "/object/slow?cc=max-age%3D60&size=65536&chunk_ms=300";
    let leader = tokio::spawn({
        let (ca, url) = (node.ca.clone(), node.url(path));
        async move { clients::get(Proto::H1, &ca, &url, &[]).await }
    });
    // The leader's fill has reached the origin before the h3 viewer asks: it waits on it.
    let deadline = Instant::now() + support::WAIT;
    while origin_count(&origin, "/object/slow").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the leader never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let mut stream = h3.start(&node.url(path), &[]).await;
    let response = stream.recv_response().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-cache"],
        "MISS",
        "a waiter of the fill"
    );
    let t0 = Instant::now();
    let first = stream.recv_data().await.unwrap();
    let first_at = t0.elapsed();
    assert!(first.is_some());
    while stream.recv_data().await.unwrap().is_some() {}
    let last_at = t0.elapsed();
    assert!(
        last_at >= first_at + Duration::from_millis(500),
        "first bytes at {first_at:?}, last at {last_at:?}: the body was not streamed"
    );
    assert_eq!(leader.await.unwrap().status, 200);
    assert_eq!(origin_count(&origin, "/object/slow").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stored_copy_when_the_origin_is_killed() {
    let mut origin = Origin::start("o");
    let node = cached_node(&origin, "");
    // max-age=0: stale at once, so the next request revalidates.
    let ok = "/object/sie?cc=max-age%3D0%2C%20stale-if-error%3D600&etag=v1";
    let strict =
        "/object/strict?cc=max-age%3D0%2C%20must-revalidate%2C%20stale-if-error%3D600&etag=v1";
    let first = get(&node, Proto::H2, ok, &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(get(&node, Proto::H2, strict, &[]).await.status, 200);
    origin.proc.kill();
    for proto in ALL {
        let stale = get(&node, proto, ok, &[]).await;
        assert_eq!(stale.status, 200, "{proto:?}");
        assert_eq!(x_cache(&stale), "STALE");
        assert_eq!(stale.body, first.body);
        // must-revalidate forbids it: the viewer gets the origin failure.
        assert_eq!(
            get(&node, proto, strict, &[]).await.status,
            502,
            "{proto:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_stale_revalidations_coalescing_and_bytes_are_counted() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let fresh = "/object/m1?cc=max-age%3D600&size=1000";
    assert_eq!(x_cache(&get(&node, Proto::H1, fresh, &[]).await), "MISS");
    for proto in ALL {
        assert_eq!(x_cache(&get(&node, proto, fresh, &[]).await), "HIT");
    }
    let validated = "/object/m2?cc=max-age%3D0&etag=m2&size=100";
    assert_eq!(
        x_cache(&get(&node, Proto::H1, validated, &[]).await),
        "MISS"
    );
    assert_eq!(
        x_cache(&get(&node, Proto::H1, validated, &[]).await),
        "REVALIDATED"
    );
    // Sent chunked by the origin: the refreshed copy is answered with its length.
    let chunked = "/object/m5?cc=max-age%3D0&etag=m5&size=50&chunked=1";
    let first = get(&node, Proto::H1, chunked, &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    let again = get(&node, Proto::H1, chunked, &[]).await;
    assert_eq!(x_cache(&again), "REVALIDATED");
    assert_eq!(again.headers["content-length"], "50");
    assert_eq!(again.body, first.body);
    let failing =
        "/object/m3?cc=max-age%3D0%2C%20stale-if-error%3D600&etag=m3&size=10&fail_after=1";
    assert_eq!(x_cache(&get(&node, Proto::H1, failing, &[]).await), "MISS");
    assert_eq!(x_cache(&get(&node, Proto::H1, failing, &[]).await), "STALE");
    // Five viewers at once on a slow object: one fetch, four join it.
    let slow = "/object/m4?cc=max-age%3D600&size=100&delay_ms=1500";
    let answers = join_all((0..5).map(|_| get(&node, Proto::H1, slow, &[]))).await;
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && x_cache(a) == "MISS"));
    assert_eq!(origin_count(&origin, "/object/m4").await, 1);

    let metric = metrics(&node).await;
    assert_eq!(metric("edge_cache_hits_total"), 3.0);
    assert_eq!(
        metric("edge_cache_misses_total"),
        9.0,
        "4 leaders + 5 on the slow object"
    );
    assert_eq!(metric("edge_cache_revalidated_total"), 2.0);
    assert_eq!(metric("edge_cache_stale_total"), 1.0);
    assert_eq!(metric("edge_cache_coalesced_total"), 4.0);
    // Three 1000-byte hits, the revalidated copies (100 and 50 bytes) and the 10-byte
    // stale one.
    assert_eq!(metric("edge_cache_bytes_served_total"), 3160.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_an_origin_answering_5xx() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    // The origin answers the first request, then 503 for good.
    let ok = "/object/sie5?cc=max-age%3D0%2C%20stale-if-error%3D600&etag=v1&fail_after=1";
    let plain = "/object/plain5?cc=max-age%3D0&etag=v1&fail_after=1";
    let first = get(&node, Proto::H1, ok, &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(get(&node, Proto::H1, plain, &[]).await.status, 200);
    for proto in ALL {
        let stale = get(&node, proto, ok, &[]).await;
        assert_eq!(
            (stale.status.as_u16(), x_cache(&stale)),
            (200, "STALE"),
            "{proto:?}"
        );
        assert_eq!(stale.body, first.body);
        // Without stale-if-error the origin's own answer goes through.
        assert_eq!(get(&node, proto, plain, &[]).await.status, 503, "{proto:?}");
    }
    assert!(origin_count(&origin, "/object/sie5").await >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_conditional_requests_and_ranges() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    // ETag validator, stale at once: every request revalidates and the origin says 304.
    let path = "/object/rv?cc=max-age%3D0&etag=v1&size=4000";
    assert_eq!(x_cache(&get(&node, Proto::H1, path, &[]).await), "MISS");
    let again = get(&node, Proto::H1, path, &[]).await;
    assert_eq!(
        (again.status.as_u16(), x_cache(&again)),
        (200, "REVALIDATED")
    );
    assert_eq!(again.body.len(), 4000);
    assert_eq!(origin_count(&origin, "/object/rv").await, 2);

    // A Last-Modified validator alone: the node revalidates with If-Modified-Since, and
    // the origin (which answers 304 only to that field here) confirms the stored copy.
    let path = "/object/rv-lm?cc=max-age%3D0&lm=1000000&size=3000";
    let first = get(&node, Proto::H1, path, &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    for proto in ALL {
        let again = get(&node, proto, path, &[]).await;
        assert_eq!(
            (again.status.as_u16(), x_cache(&again)),
            (200, "REVALIDATED"),
            "{proto:?}"
        );
        assert_eq!(again.body, first.body, "{proto:?}");
    }
    assert_eq!(origin_count(&origin, "/object/rv-lm").await, 4);
    let line =
        node.wait_for_access(|l| l["path"] == "/object/rv-lm" && l["cache"] == "REVALIDATED");
    assert_eq!(line["status"], 200, "{line}");

    // Age on answers from the stored copy: the origin (a cache itself) says 30 s on its
    // 200 and on its 304; the node adds its own time, and says so on a revalidation too.
    let aged = "/object/aged?cc=max-age%3D0&etag=a1&size=100&age=30";
    let age_of = |a: &Answer| -> u64 { a.headers["age"].to_str().unwrap().parse().unwrap() };
    let first = get(&node, Proto::H1, aged, &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(age_of(&first), 30);
    for proto in ALL {
        let again = get(&node, proto, aged, &[]).await;
        assert_eq!(x_cache(&again), "REVALIDATED", "{proto:?}");
        assert!(
            (30..40).contains(&age_of(&again)),
            "{proto:?}: {:?}",
            again.headers
        );
    }
    let kept = "/object/kept?cc=max-age%3D600&size=100&age=100";
    assert_eq!(x_cache(&get(&node, Proto::H1, kept, &[]).await), "MISS");
    let hit = get(&node, Proto::H2, kept, &[]).await;
    assert_eq!(x_cache(&hit), "HIT");
    assert!((100..110).contains(&age_of(&hit)), "{:?}", hit.headers);

    // The viewer's own validators are answered from the cache.
    let fresh = "/object/cond?cc=max-age%3D600&etag=v7&lm=1000000&size=100";
    let full = get(&node, Proto::H2, fresh, &[]).await;
    for proto in ALL {
        let nm = get(&node, proto, fresh, &[("if-none-match", "\"v7\"")]).await;
        assert_eq!(nm.status, 304, "{proto:?}");
        assert!(nm.body.is_empty());
        assert_eq!(nm.headers["etag"], "\"v7\"");
        let ims = get(
            &node,
            proto,
            fresh,
            &[("if-modified-since", "Mon, 12 Jan 1970 13:46:40 GMT")],
        )
        .await;
        assert_eq!(ims.status, 304);
        let changed = get(&node, proto, fresh, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(changed.status, 200);

        // Ranges from the stored object.
        let part = get(&node, proto, fresh, &[("range", "bytes=10-19")]).await;
        assert_eq!(part.status, 206);
        assert_eq!(part.headers["content-range"], "bytes 10-19/100");
        assert_eq!(part.body, full.body.slice(10..20));
        let tail = get(&node, proto, fresh, &[("range", "bytes=-5")]).await;
        assert_eq!(tail.body, full.body.slice(95..));
        let bad = get(&node, proto, fresh, &[("range", "bytes=500-")]).await;
        assert_eq!(bad.status, 416);
        assert_eq!(bad.headers["content-range"], "bytes */100");
        for ignored in ["bytes=5-1", "bytes=abc", "lines=1-2", "bytes=0-1,5-6"] {
            let whole = get(&node, proto, fresh, &[("range", ignored)]).await;
            assert_eq!(whole.status, 200, "{ignored}: an invalid Range is ignored");
            assert_eq!(whole.body, full.body);
        }
        // If-Range with a different validator: the whole object.
        let if_range = get(
            &node,
            proto,
            fresh,
            &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
        )
        .await;
        assert_eq!(if_range.status, 200);
    }
    assert_eq!(origin_count(&origin, "/object/cond").await, 1);

    // A range on a cold key fetches the whole object once and serves the slice.
    let cold = "/object/cold?cc=max-age%3D600&size=50000";
    let part = get(&node, Proto::H3, cold, &[("range", "bytes=40000-40009")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 10);
    let whole = get(&node, Proto::H1, cold, &[]).await;
    assert_eq!(x_cache(&whole), "HIT");
    assert_eq!(part.body, whole.body.slice(40000..40010));
    assert_eq!(origin_count(&origin, "/object/cold").await, 1);

    // Twenty viewers asking for different ranges of another cold object at once: one
    // whole-object fetch serves every slice.
    let cold = "/object/cold-many?cc=max-age%3D600&size=60000&delay_ms=200";
    let parts = join_all((0..20u64).map(|i| {
        let (ca, url) = (node.ca.clone(), node.url(cold));
        let range = format!("bytes={}-{}", i * 3000, i * 3000 + 99);
        async move { clients::get(ALL[i as usize % 3], &ca, &url, &[("range", &range)]).await }
    }))
    .await;
    let whole = origin.direct("/object/cold-many?size=60000").await;
    for (i, part) in parts.iter().enumerate() {
        let at = i * 3000;
        assert_eq!(part.status, 206, "viewer {i}");
        assert_eq!(part.body, whole.slice(at..at + 100), "viewer {i}");
    }
    assert_eq!(
        origin_count(&origin, "/object/cold-many").await,
        2,
        "one fill plus our direct read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_cached_or_shared_is_not() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    for (name, query) in [
        ("nostore", "cc=no-store"),
        ("private", "cc=private%2C%20max-age%3D60"),
        ("cookie", "cc=max-age%3D60&cookie=1"),
    ] {
        let path = format!("/object/{name}?{query}&delay_ms=200");
        let both = join_all((0..2).map(|_| get(&node, Proto::H2, &path, &[]))).await;
        assert!(both.iter().all(|a| a.status == 200));
        let third = get(&node, Proto::H1, &path, &[]).await;
        assert_ne!(x_cache(&third), "HIT", "{name}");
    }
    // no-store: the two concurrent viewers share one fetch (the answer is the same for
    // everyone), nothing is stored, so the third fetches again.
    assert_eq!(origin_count(&origin, "/object/nostore").await, 2);
    // private and Set-Cookie answers are never shared nor stored: one request per viewer.
    assert_eq!(origin_count(&origin, "/object/private").await, 3);
    assert_eq!(origin_count(&origin, "/object/cookie").await, 3);

    // A request with Authorization is not answered from, nor stored into, the shared cache
    // unless the response allows it.
    let path = "/object/authz?cc=max-age%3D60";
    get(&node, Proto::H1, path, &[("authorization", "Bearer a")]).await;
    get(&node, Proto::H1, path, &[("authorization", "Bearer b")]).await;
    assert_eq!(origin_count(&origin, "/object/authz").await, 2);

    // only-if-cached with nothing stored: 504 (RFC 9111 §5.2.1.7).
    let miss = get(
        &node,
        Proto::H1,
        "/object/never",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(miss.status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_vary_and_auth_query_parameters() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let path = "/object/v?cc=max-age%3D60&vary=x-device";
    for device in ["tv", "phone", "tv", "phone"] {
        let a = get(&node, Proto::H2, path, &[("x-device", device)]).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(
        origin_count(&origin, "/object/v").await,
        2,
        "one per variant"
    );

    // Signed-URL parameters are not part of the key: every viewer's token differs.
    for token in ["a", "b", "c"] {
        let a = get(
            &node,
            Proto::H1,
            &format!("/object/signed?cc=max-age%3D60&token={token}&exp=9"),
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(origin_count(&origin, "/object/signed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_once_in_the_background() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let path = "/object/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D600";
    assert_eq!(x_cache(&get(&node, Proto::H1, path, &[]).await), "MISS");
    // Wait (bounded) until the stored copy is stale.
    let deadline = Instant::now() + support::WAIT;
    let mut answers = Vec::new();
    loop {
        let a = get(&node, Proto::H2, path, &[]).await;
        if x_cache(&a) == "STALE" {
            answers.push(a);
            break;
        }
        assert!(Instant::now() < deadline, "never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ten more right away: all served from memory, one refresh behind them.
    answers.extend(join_all((0..10).map(|_| get(&node, Proto::H1, path, &[]))).await);
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && ["STALE", "HIT"].contains(&x_cache(a))));
    let deadline = Instant::now() + support::WAIT;
    while origin_count(&origin, "/object/swr").await < 2 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        origin_count(&origin, "/object/swr").await,
        2,
        "exactly one refresh"
    );
    // Still one refresh once a second one would have had time to reach the origin (the
    // eleven stale answers above share the first).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        origin_count(&origin, "/object/swr").await,
        2,
        "a second background refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_origin_body_is_never_cached() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    // chunk_ms lets the origin flush what it sends before it aborts.
    let path = "/object/trunc?cc=max-age%3D60&size=100000&truncate=1&chunk_ms=20";
    for _ in 0..2 {
        // The viewer's connection ends with an error instead of a short "complete" body.
        let mut tls = clients::raw_tls(node.https, &node.ca).await;
        let text = clients::exchange(
            &mut tls,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await;
        let body_len = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
        assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
        assert!(
            body_len < 100_000,
            "a truncated body was delivered as complete"
        );
    }
    assert_eq!(
        origin_count(&origin, "/object/trunc").await,
        2,
        "nothing was stored"
    );
    let line = node.wait_for_access(|l| l["path"] == "/object/trunc" && l["complete"] == false);
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("origin body failed"),
        "{line}"
    );

    // Three viewers at once over h2, h3 and h2, joined on one fetch that fails: each
    // stream ends with an error (a reset), none hangs, none looks complete.
    let path = "/object/trunc2?cc=max-age%3D60&size=100000&truncate=1&chunk_ms=100";
    let over_h2 = || async {
        use http_body_util::BodyExt;
        let mut r = clients::start_tcp(Proto::H2, &node.ca, &node.url(path), &[]).await;
        let mut n = 0;
        loop {
            match r.body_mut().frame().await {
                Some(Ok(f)) => n += f.into_data().map(|d| d.len()).unwrap_or(0),
                Some(Err(_)) => return (n, true),
                None => return (n, false),
            }
        }
    };
    let over_h3 = async {
        use bytes::Buf;
        let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
        let mut stream = h3.start(&node.url(path), &[]).await;
        if stream.recv_response().await.is_err() {
            return (0, true);
        }
        let mut n = 0;
        loop {
            match stream.recv_data().await {
                Ok(Some(chunk)) => n += chunk.remaining(),
                Ok(None) => return (n, false),
                Err(_) => return (n, true),
            }
        }
    };
    let (a, b, c) = tokio::time::timeout(support::WAIT, async {
        tokio::join!(over_h2(), over_h3, over_h2())
    })
    .await
    .expect("a viewer of a failed fetch hung");
    for (viewer, (bytes, failed)) in [("h2", a), ("h3", b), ("h2", c)] {
        assert!(
            failed && bytes < 100_000,
            "{viewer}: {bytes} bytes, failed: {failed}"
        );
    }
    assert!((1..=3).contains(&origin_count(&origin, "/object/trunc2").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_prefix_and_surrogate_key_through_the_admin_api() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let admin = node.admin_addr();
    let paths = [
        "/object/p1?cc=max-age%3D600",
        "/object/dir/p2?cc=max-age%3D600",
        "/object/dir/p3?cc=max-age%3D600",
        "/object/p4?cc=max-age%3D600&sk=title-42%20season-1",
        "/object/p5?cc=max-age%3D600&tag=title-7,season-3",
    ];
    for p in paths {
        assert_eq!(x_cache(&get(&node, Proto::H1, p, &[]).await), "MISS");
        assert_eq!(x_cache(&get(&node, Proto::H1, p, &[]).await), "HIT");
    }
    let purge = |body: String, token: Option<&'static str>| async move {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /purge HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        clients::exchange(&mut tcp, req.as_bytes()).await
    };
    let port = node.https.port();
    let r = purge(
        format!("{{\"url\":\"https://localhost:{port}/object/p1?cc=max-age%3D600\"}}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(clients::status_of(&r), 200, "{r}");
    assert!(r.contains("\"purged\":1"), "{r}");
    assert_eq!(x_cache(&get(&node, Proto::H1, paths[0], &[]).await), "MISS");
    let r = purge(
        "{\"prefix\":\"https://localhost/object/dir/\"}".to_string(),
        Some(TOKEN),
    )
    .await;
    assert!(r.contains("\"purged\":2"), "{r}");
    assert_eq!(x_cache(&get(&node, Proto::H2, paths[2], &[]).await), "MISS");
    let r = purge("{\"surrogate_key\":\"season-1\"}".into(), Some(TOKEN)).await;
    assert!(r.contains("\"purged\":1"), "{r}");
    assert_eq!(x_cache(&get(&node, Proto::H3, paths[3], &[]).await), "MISS");
    // Cache-Tag (comma-separated) names surrogate keys too; the other entries stay.
    let r = purge("{\"surrogate_key\":\"season-3\"}".into(), Some(TOKEN)).await;
    assert!(r.contains("\"purged\":1"), "{r}");
    assert_eq!(x_cache(&get(&node, Proto::H1, paths[4], &[]).await), "MISS");
    assert_eq!(x_cache(&get(&node, Proto::H1, paths[2], &[]).await), "HIT");

    // Upstream health for operators.
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let origins = clients::exchange(
        &mut tcp,
        format!("GET /origins HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        origins.contains(&format!("{{\"healthy\":true,\"url\":\"{}\"}}", origin.url)),
        "{origins}"
    );

    // Bad admin requests get specific answers.
    assert_eq!(
        clients::status_of(&purge("{\"url\":\"x\"}".into(), None).await),
        401
    );
    assert_eq!(
        clients::status_of(&purge("{\"url\":\"x\"}".into(), Some("wrong-token-wrong-token")).await),
        401
    );
    for bad in [
        "not json",
        "{\"url\":\"/relative\"}",
        "{\"url\":\"https://a/\",\"prefix\":\"https://a/\"}",
        "{\"flush\":true}",
        "{}",
    ] {
        let r = purge(bad.into(), Some(TOKEN)).await;
        assert_eq!(clients::status_of(&r), 400, "{bad}: {r}");
        assert!(r.contains("bad purge request"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_and_metrics_report_it() {
    let origin = Origin::start("o");
    let node = cached_node(
        &origin,
        "[cache]\nmax_bytes = 1048576\nshards = 4\nmax_object_bytes = 200000\n",
    );
    for i in 0..40 {
        let a = get(
            &node,
            Proto::H2,
            &format!("/object/fill{i}?cc=max-age%3D600&size=100000"),
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
    }
    // Too large to store: passes through every time.
    for _ in 0..2 {
        get(
            &node,
            Proto::H1,
            "/object/huge?cc=max-age%3D600&size=300000",
            &[],
        )
        .await;
    }
    assert_eq!(origin_count(&origin, "/object/huge").await, 2);

    let metric = metrics(&node).await;
    let used = metric("edge_cache_memory_bytes");
    assert!(used > 0.0 && used <= 1_048_576.0, "memory {used}");
    assert!(metric("edge_cache_evictions_total") > 0.0);
    assert_eq!(metric("edge_cache_misses_total"), 40.0);
    assert_eq!(
        metric("edge_cache_passes_total"),
        2.0,
        "too large: passed through"
    );
    assert_eq!(metric("edge_cache_not_stored_too_large_total"), 2.0);
    assert_eq!(metric("edge_cache_max_bytes"), 1_048_576.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_invalidate_the_stored_url() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let path = "/object/inv?cc=max-age%3D600";
    get(&node, Proto::H1, path, &[]).await;
    assert_eq!(x_cache(&get(&node, Proto::H1, path, &[]).await), "HIT");
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    let r = clients::exchange(
        &mut tls,
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(clients::status_of(&r), 200);
    assert_eq!(x_cache(&get(&node, Proto::H1, path, &[]).await), "MISS");

    // The URI named in Location is invalidated too (same host only).
    let target = "/object/target?cc=max-age%3D600";
    get(&node, Proto::H1, target, &[]).await;
    assert_eq!(x_cache(&get(&node, Proto::H1, target, &[]).await), "HIT");
    let post = "/object/poster?loc=/object/target%3Fcc%3Dmax-age%253D600";
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    let r = clients::exchange(
        &mut tls,
        format!("POST {post} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        r.to_ascii_lowercase()
            .contains("location: /object/target?cc=max-age%3d600"),
        "{r}"
    );
    assert_eq!(x_cache(&get(&node, Proto::H1, target, &[]).await), "MISS");
}

/// A purge of one URL (here by a POST) must not stop other objects being stored while
/// their fills are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_only_affects_fills_of_its_own_url() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let slow = "/object/slowfill?cc=max-age%3D600&size=65536&chunk_ms=100";
    let fill = tokio::spawn({
        let (ca, url) = (node.ca.clone(), node.url(slow));
        async move { clients::get(Proto::H1, &ca, &url, &[]).await }
    });
    // Wait until the fill is under way, then POST elsewhere.
    let deadline = Instant::now() + support::WAIT;
    while origin_count(&origin, "/object/slowfill").await == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    let r = clients::exchange(
        &mut tls,
        b"POST /object/elsewhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(clients::status_of(&r), 200);
    assert_eq!(x_cache(&fill.await.unwrap()), "MISS");
    assert_eq!(x_cache(&get(&node, Proto::H1, slow, &[]).await), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_headers_cannot_poison_the_cache_for_other_viewers() {
    let origin = Origin::start("o");
    let node = cached_node(&origin, "");
    let fields = "x-forwarded-host,x-original-url,x-rewrite-url,x-http-method-override,x-forwarded-scheme,x-host";
    let path = format!("/object/poison?cc=max-age%3D60&reflect={fields}");
    // The attacker's request fills the cache with whatever the origin made of its fields.
    let attacker = get(
        &node,
        Proto::H1,
        &path,
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-scheme", "http"),
        ],
    )
    .await;
    assert_eq!(attacker.status, 200);
    let seen = attacker.headers["x-reflected"].to_str().unwrap().to_owned();
    for bad in ["evil", "/admin", "DELETE", "=http"] {
        assert!(!seen.contains(bad), "the origin saw `{bad}`: {seen}");
    }
    // Everyone else gets the stored response, which nothing of the attacker's shaped.
    for proto in ALL {
        let viewer = get(&node, proto, &path, &[]).await;
        assert_eq!(x_cache(&viewer), "HIT", "{proto:?}");
        assert_eq!(viewer.headers["x-reflected"], seen.as_str());
    }
    assert_eq!(origin_count(&origin, "/object/poison").await, 1);
}

/// An origin that breaks HTTP/1.1 framing on purpose, one way per path: it counts the
/// requests per path and answers each with the canned bytes below, then closes.
async fn misframing_origin() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(support::WAIT, tcp.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                *seen.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let cacheable = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n";
                let answer: Vec<u8> = match path.as_str() {
                    // Announces 1,000 bytes, sends 500 and closes cleanly (FIN, no error).
                    "/short" => [
                        format!("{cacheable}Content-Length: 1000\r\n\r\n").into_bytes(),
                        vec![b's'; 500],
                    ]
                    .concat(),
                    // Chunked, and the connection closes before the last chunk.
                    "/chunked-cut" => [
                        format!("{cacheable}Transfer-Encoding: chunked\r\n\r\n").into_bytes(),
                        b"1f4\r\n".to_vec(),
                        vec![b'c'; 500],
                        b"\r\n".to_vec(),
                    ]
                    .concat(),
                    // 1,000 bytes as announced, then 200 bytes that belong to no response.
                    "/long" => [
                        format!("{cacheable}Content-Length: 1000\r\n\r\n").into_bytes(),
                        vec![b'l'; 1000],
                        b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n".to_vec(),
                        vec![b'x'; 200],
                    ]
                    .concat(),
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                };
                let _ = tcp.write_all(&answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, counts)
}

/// One HTTP/1.1 request over TLS, everything the node sends until it closes (bounded).
async fn read_until_closed(node: &Node, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, tls.read_to_end(&mut all)).await;
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_or_longer_than_its_framing_is_never_cached_as_something_else() {
    let (addr, counts) = misframing_origin().await;
    let node = Node::start(&format!(
        "[origins.raw]\nprimary = \"http://{addr}\"\nretries = 0\n\n[[routes]]\norigin = \"raw\"\n\
         [routes.cache]\nenabled = true\n"
    ));
    let count = |path: &str| counts.lock().unwrap().get(path).copied().unwrap_or(0);

    // Shorter than its framing: the viewer's connection ends before the announced length
    // (never a short body that looks complete), nothing is stored, the next viewer makes
    // the origin answer again.
    for (path, announced) in [("/short", 1000), ("/chunked-cut", 0)] {
        for _ in 0..2 {
            let text = read_until_closed(&node, path).await;
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            if head.is_empty() {
                // Closed before the head went out: nothing that could pass for an answer.
            } else if head.starts_with("HTTP/1.1 200") {
                if announced > 0 {
                    assert!(body.len() < announced, "{path}: {head}");
                } else {
                    // Chunked to the viewer too: the terminating chunk never comes.
                    assert!(!body.ends_with("0\r\n\r\n"), "{path}: looked complete");
                }
            } else {
                assert!(head.starts_with("HTTP/1.1 502"), "{path}: {head}");
            }
        }
        assert_eq!(count(path), 2, "{path}: a broken body was stored");
        let line = node.wait_for_access(|l| l["path"] == path && l["complete"] == false);
        assert!(line["error"].as_str().is_some(), "{line}");
    }

    // Longer than its framing: the response is the announced 1,000 bytes, and what came
    // after them is never taken for a response of its own, nor appended.
    for proto in ALL {
        let a = get(&node, proto, "/long", &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
        assert_eq!(a.body.len(), 1000, "{proto:?}");
        assert!(a.body.iter().all(|&b| b == b'l'), "{proto:?}");
        assert!(a.headers.get("x-smuggled").is_none(), "{proto:?}");
    }
    assert_eq!(count("/long"), 1, "the complete response is stored once");
}

/// Freshness from each field an origin can give, and the route's own say over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_from_each_origin_field_and_the_routes_overrides() {
    let origin = Origin::start("o");
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n\
         [[routes]]\nprefix = \"/object/ovr\"\norigin = \"media\"\n\
         [routes.cache]\noverride_ttl_s = 600\n\n\
         [[routes]]\nprefix = \"/object/dev\"\norigin = \"media\"\n\
         [routes.cache]\nkey_headers = [\"x-device\"]\n\n\
         [[routes]]\norigin = \"media\"\n",
        origin.url
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // (path, what the second request is, origin requests after two)
    let cases = [
        // no-cache: stored, but confirmed with the origin before each reuse.
        ("/object/nc?cc=no-cache&etag=n1", "REVALIDATED", 2),
        // s-maxage is the shared cache's own lifetime and beats max-age.
        ("/object/sm?cc=s-maxage%3D600%2C%20max-age%3D0", "HIT", 1),
        // Expires in the future, no Cache-Control.
        (&format!("/object/ex?expires={}", now + 600), "HIT", 1),
        // Expires in the past and no validator: fetched again.
        ("/object/ex-old?expires=1000", "MISS", 2),
        // The route's override_ttl_s makes an origin's max-age=0 fresh for 10 minutes...
        ("/object/ovr/a?cc=max-age%3D0", "HIT", 1),
        // ...but never stores what no-store forbids.
        ("/object/ovr/b?cc=no-store", "MISS", 2),
    ];
    for (path, second, requests) in cases {
        let first = get(&node, Proto::H1, path, &[]).await;
        assert_eq!(
            (first.status.as_u16(), x_cache(&first)),
            (200, "MISS"),
            "{path}"
        );
        let again = get(&node, Proto::H2, path, &[]).await;
        assert_eq!(again.status, 200, "{path}");
        assert_eq!(x_cache(&again), second, "{path}");
        assert_eq!(again.body, first.body, "{path}");
        let counted = path.split('?').next().unwrap();
        assert_eq!(origin_count(&origin, counted).await, requests, "{path}");
    }

    // key_headers: the route keys on x-device, with no Vary from the origin.
    let path = "/object/dev/seg?cc=max-age%3D600";
    for (device, cache) in [
        ("tv", "MISS"),
        ("phone", "MISS"),
        ("tv", "HIT"),
        ("phone", "HIT"),
    ] {
        let a = get(&node, Proto::H3, path, &[("x-device", device)]).await;
        assert_eq!(x_cache(&a), cache, "{device}");
    }
    assert_eq!(origin_count(&origin, "/object/dev/seg").await, 2);
}

/// Viewers waiting on a fill whose origin cannot be reached at all (no head ever comes)
/// are each released with a 502, none left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_fetch_that_fails_before_its_head_are_all_released() {
    // A port nothing listens on: every connection is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"http://{dead}\"\nretries = 0\n\n\
         [[routes]]\norigin = \"media\"\n[routes.cache]\nenabled = true\n"
    ));
    let viewers = (0..12).map(|i| {
        let (ca, url) = (node.ca.clone(), node.url("/object/gone?cc=max-age%3D60"));
        async move { clients::get(ALL[i % 3], &ca, &url, &[]).await }
    });
    let answers = tokio::time::timeout(support::WAIT, join_all(viewers))
        .await
        .expect("a viewer of a failed fetch hung");
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 502, "viewer {i}");
        assert!(
            std::str::from_utf8(&a.body)
                .unwrap()
                .contains("origin unavailable"),
            "viewer {i}: {:?}",
            a.body
        );
    }
}
