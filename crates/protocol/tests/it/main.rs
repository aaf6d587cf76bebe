//! The protocol's encodings and frames.

use botfleet_protocol::{
    Ack, Action, ActionResult, Delivery, Encoding, FrameReader, Hello, Json, Message, Outcome,
    ReadError, Series, SeriesValue, Welcome, WorkerMetrics, decode_payload, encode_frame,
    write_coalesced,
};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

fn json_doc() -> impl Strategy<Value = Json> {
    prop_oneof![
        (any::<i64>(), "[a-z ]{0,20}").prop_map(|(id, text)| Json::from_value(
            &serde_json::json!({ "update_id": id, "message": { "text": text, "chat": { "id": -id } } })
        )),
        Just(Json::from_value(&serde_json::json!(true))),
        "\\PC{0,30}".prop_map(|s| Json::from_value(&s)),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            "\\PC{0,12}",
            prop::collection::vec("[a-z_]{1,8}", 0..3)
        )
            .prop_map(
                |(version, worker_id, pid, bot, capabilities)| Message::Hello(Hello {
                    version,
                    worker_id,
                    pid,
                    bot,
                    capabilities
                })
            ),
        (any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(version, worker_id, heartbeat_ms)| {
                Message::Welcome(Welcome {
                    version,
                    worker_id,
                    heartbeat_ms,
                })
            }
        ),
        Just(Message::Ready),
        prop::collection::vec((any::<i64>(), any::<u32>(), json_doc()), 0..4).prop_map(|l| {
            Message::Updates(
                l.into_iter()
                    .map(|(update_id, attempt, update)| Delivery {
                        update_id,
                        attempt,
                        update,
                    })
                    .collect(),
            )
        }),
        prop::collection::vec((any::<i64>(), 0..3u8), 0..4).prop_map(|l| {
            Message::Acks(
                l.into_iter()
                    .map(|(update_id, outcome)| Ack {
                        update_id,
                        outcome: match outcome {
                            0 => Outcome::Handled,
                            1 => Outcome::Failed,
                            _ => Outcome::Retry,
                        },
                    })
                    .collect(),
            )
        }),
        prop::collection::vec((any::<u64>(), "[a-zA-Z]{1,20}", json_doc()), 0..4).prop_map(|l| {
            Message::Actions(
                l.into_iter()
                    .map(|(request_id, method, params)| Action {
                        request_id,
                        method,
                        params,
                    })
                    .collect(),
            )
        }),
        prop::collection::vec((any::<u64>(), any::<bool>(), json_doc()), 0..4).prop_map(|l| {
            Message::Results(
                l.into_iter()
                    .map(|(request_id, ok, body)| ActionResult {
                        request_id,
                        ok,
                        body,
                    })
                    .collect(),
            )
        }),
        any::<u64>().prop_map(Message::Heartbeat),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(handled, failed, in_flight, handling_p50_us, handling_p99_us)| {
                    Message::Metrics(WorkerMetrics {
                        handled,
                        failed,
                        in_flight,
                        handling_p50_us,
                        handling_p99_us,
                    })
                }
            ),
        // JSON objects keep one value per name, in name order; counts are
        // integers.
        prop::collection::btree_map("[a-z_]{1,12}", any::<u32>(), 0..5).prop_map(|m| {
            Message::Stats(m.into_iter().map(|(k, v)| (k, f64::from(v))).collect())
        }),
        // Labels as a JSON object: one value per name, in name order;
        // numbers that print and parse back exactly.
        prop::collection::vec(
            (
                "[a-z_]{1,20}",
                prop::collection::btree_map("[a-z]{1,8}", "\\PC{0,12}", 0..3),
                prop_oneof![
                    any::<u64>().prop_map(SeriesValue::Counter),
                    any::<i32>().prop_map(|v| SeriesValue::Gauge(f64::from(v) / 4.0)),
                    (prop::collection::vec(0u32..1000, 0..4), any::<u32>()).prop_map(
                        |(bounds, sum)| {
                            let mut bounds: Vec<f64> =
                                bounds.into_iter().map(|b| f64::from(b) / 8.0).collect();
                            bounds.sort_by(f64::total_cmp);
                            bounds.dedup();
                            let counts = (0..=bounds.len() as u64).collect();
                            SeriesValue::Histogram {
                                bounds,
                                counts,
                                sum: f64::from(sum),
                            }
                        }
                    ),
                ],
            ),
            0..4
        )
        .prop_map(|l| {
            Message::Series(
                l.into_iter()
                    .map(|(name, labels, value)| Series {
                        name,
                        labels: labels.into_iter().collect(),
                        value,
                    })
                    .collect(),
            )
        }),
        Just(Message::Drain),
        Just(Message::Drained),
        Just(Message::Shutdown),
        (any::<u16>(), "\\PC{0,40}").prop_map(|(code, message)| Message::Error { code, message }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn both_encodings_round_trip(messages in prop::collection::vec(message(), 1..6)) {
        for encoding in [Encoding::Binary, Encoding::Json] {
            let mut frame = Vec::new();
            encode_frame(encoding, &messages, &mut frame);
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            prop_assert_eq!(len, frame.len() - 4);
            let (got_encoding, got) = decode_payload(&frame[4..]).unwrap();
            prop_assert_eq!(got_encoding, encoding);
            prop_assert_eq!(&got, &messages);
        }
    }

    /// Random bytes never panic the decoder: they decode or they are an
    /// error.
    #[test]
    fn garbage_is_an_error_not_a_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..200), first in prop_oneof![Just(0xBFu8), Just(b'['), any::<u8>()]) {
        bytes.insert(0, first);
        let _ = decode_payload(&bytes);
    }

    /// Every cut of a valid binary frame is an error, never a panic or a
    /// shorter list.
    #[test]
    fn every_truncation_is_an_error(messages in prop::collection::vec(message(), 1..4)) {
        let mut frame = Vec::new();
        encode_frame(Encoding::Binary, &messages, &mut frame);
        let payload = &frame[4..];
        for cut in 1..payload.len() {
            if let Ok((_, got)) = decode_payload(&payload[..cut]) {
                // A cut between two messages is a valid shorter frame.
                prop_assert!(got.len() < messages.len());
                prop_assert_eq!(&got[..], &messages[..got.len()]);
            }
        }
    }
}

#[test]
fn errors_say_what_and_where() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "malformed frame at byte 0 of the payload: an empty frame"),
        (b"\x00", "malformed frame at byte 0 of the payload: unknown encoding byte 0x00 (0xBF binary, '[' JSON)"),
        (b"\xBF", "malformed frame at byte 1 of the payload: a frame with no message"),
        (b"\xBF\x63", "malformed frame at byte 1 of the payload: unknown message tag 99"),
        (b"\xBF\x08\x00\x01", "malformed frame at byte 2 of the payload: heartbeat.seq: the frame ends after 2 more bytes, 8 needed"),
        (b"\xBF\x05\xFF\xFF\xFF\xFF", "malformed frame at byte 2 of the payload: acks: a count of 4294967295 items does not fit in the frame"),
        (b"\xBF\x05\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x07", "malformed frame at byte 14 of the payload: acks[].outcome: unknown value 7"),
        (b"\xBF\x04\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02{x", "malformed frame at byte 18 of the payload: updates[].update: not one JSON document (key must be a string at line 1 column 2)"),
        (b"[]", "malformed frame at byte 0 of the payload: a frame with no message"),
        (b"[{\"type\":\"nope\"}]", "malformed frame at byte 0 of the payload: message 0: unknown message type `nope`"),
        (b"[{\"type\":\"acks\",\"acks\":[{\"update_id\":\"1\"}]}]", "malformed frame at byte 0 of the payload: message 0: `update_id` is not an integer in range"),
        (b"[{\"type\":\"welcome\",\"version\":70000,\"worker_id\":1,\"heartbeat_ms\":1}]", "malformed frame at byte 0 of the payload: message 0: `version` is not an integer in range"),
        (b"[1,", "malformed frame at byte 0 of the payload: not a JSON array of messages (line 1, column 3): EOF while parsing a value at line 1 column 3"),
    ];
    for (payload, expected) in cases {
        let err = decode_payload(payload).unwrap_err();
        assert_eq!(err.to_string(), *expected, "{payload:?}");
    }
}

/// The JSON encoding, as a worker in another language writes and reads it.
#[test]
fn the_json_encoding_is_plain() {
    let update = Json::from_value(&serde_json::json!({"update_id": 5, "message": {"text": "hi"}}));
    let mut frame = Vec::new();
    encode_frame(
        Encoding::Json,
        &[Message::Updates(vec![Delivery {
            update_id: 5,
            attempt: 0,
            update,
        }])],
        &mut frame,
    );
    assert_eq!(
        std::str::from_utf8(&frame[4..]).unwrap(),
        r#"[{"type":"updates","updates":[{"update_id":5,"attempt":0,"update":{"message":{"text":"hi"},"update_id":5}}]}]"#
    );
    // Optional fields may be left out by hand-written workers.
    let (_, m) = decode_payload(
        br#"[{"type":"acks","acks":[{"update_id":5}]},{"type":"actions","actions":[{"request_id":1,"method":"getMe"}]},{"type":"heartbeat"}]"#,
    )
    .unwrap();
    assert_eq!(
        m,
        [
            Message::Acks(vec![Ack {
                update_id: 5,
                outcome: Outcome::Handled
            }]),
            Message::Actions(vec![Action {
                request_id: 1,
                method: "getMe".into(),
                params: Json::from_value(&serde_json::json!({}))
            }]),
            Message::Heartbeat(0),
        ]
    );
}

#[tokio::test]
async fn the_reader_stops_cleanly_on_bad_frames() {
    // Too large: refused from the length alone.
    let (mut a, b) = tokio::io::duplex(1024);
    a.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let mut r = FrameReader::new(b);
    assert!(matches!(r.read().await, Err(ReadError::TooLarge { len, .. }) if len == 1 << 30));
    // Cut short: the peer closes mid-frame.
    let (mut a, b) = tokio::io::duplex(1024);
    a.write_all(&[0, 0, 0, 10, 0xBF, 3]).await.unwrap();
    drop(a);
    let mut r = FrameReader::new(b);
    let e = r.read().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the connection closed 2 bytes into a frame of 10"
    );
    assert_eq!(e.code(), Some(botfleet_protocol::error_codes::MALFORMED));
    // A clean close between frames is the end, not an error.
    let (mut a, b) = tokio::io::duplex(1024);
    let mut frame = Vec::new();
    encode_frame(Encoding::Binary, &[Message::Ready], &mut frame);
    a.write_all(&frame).await.unwrap();
    drop(a);
    let mut r = FrameReader::new(b);
    assert_eq!(
        r.read().await.unwrap(),
        Some((Encoding::Binary, vec![Message::Ready]))
    );
    assert_eq!(r.read().await.unwrap(), None);
}

/// What queued while nothing was written goes out in one frame, with the
/// acks merged into one message.
#[tokio::test]
async fn the_writer_coalesces_what_is_queued() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for id in 0..100 {
        tx.send(Message::Acks(vec![Ack {
            update_id: id,
            outcome: Outcome::Handled,
        }]))
        .unwrap();
    }
    tx.send(Message::Heartbeat(1)).unwrap();
    drop(tx);
    let (mut a, b) = tokio::io::duplex(1 << 20);
    let mut writes = Vec::new();
    write_coalesced(&mut rx, &mut a, Encoding::Binary, |w| writes.push(w))
        .await
        .unwrap();
    drop(a);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        (writes[0].frames, writes[0].messages, writes[0].items),
        (1, 2, 101)
    );
    let mut r = FrameReader::new(b);
    let (_, messages) = r.read().await.unwrap().unwrap();
    assert_eq!(messages.len(), 2);
    assert!(matches!(&messages[0], Message::Acks(l) if l.len() == 100));
    assert_eq!(r.read().await.unwrap(), None);
}

/// The example of docs/protocol.md, byte for byte.
#[test]
fn the_documented_binary_example() {
    let mut frame = Vec::new();
    encode_frame(
        Encoding::Binary,
        &[Message::Ready, Message::Heartbeat(7)],
        &mut frame,
    );
    assert_eq!(
        frame,
        [0, 0, 0, 0x0B, 0xBF, 0x03, 0x08, 0, 0, 0, 0, 0, 0, 0, 7]
    );
    let doc = include_str!("../../../../docs/protocol.md");
    assert!(doc.contains("00 00 00 0B   length 11"));
}

/// A reader that trusts JSON takes a document as it comes and leaves the
/// check to whoever parses it; the default reader refuses the frame.
#[tokio::test]
async fn a_trusting_reader_leaves_the_json_check_to_the_parse() {
    let payload: &[u8] =
        b"\xBF\x04\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02{x";
    let frame = [&(payload.len() as u32).to_be_bytes()[..], payload].concat();
    let (mut a, b) = tokio::io::duplex(1024);
    a.write_all(&frame).await.unwrap();
    a.write_all(&frame).await.unwrap();
    drop(a);
    let mut r = FrameReader::new(b);
    assert!(
        r.read()
            .await
            .unwrap_err()
            .to_string()
            .contains("not one JSON document")
    );
    let (mut a, b) = tokio::io::duplex(1024);
    a.write_all(&frame).await.unwrap();
    drop(a);
    let mut r = FrameReader::new(b).trust_json();
    let (_, messages) = r.read().await.unwrap().unwrap();
    let [Message::Updates(list)] = messages.as_slice() else {
        panic!("one updates message: {messages:?}");
    };
    assert_eq!(list[0].update.get(), "{x");
    assert!(list[0].update.raw().is_err());
    assert!(list[0].update.deserialize::<serde_json::Value>().is_err());
    // A valid document reads the same either way.
    let good = Json::from_value(&serde_json::json!({"a": [1, 2]}));
    assert_eq!(good.raw().unwrap().get(), r#"{"a":[1,2]}"#);
}

/// A `read` dropped mid-frame (a `select!` whose other branch won) loses
/// nothing: the next `read` finishes the frame, header split included.
#[tokio::test]
async fn a_read_dropped_mid_frame_loses_nothing() {
    let mut frame = Vec::new();
    let sent = [Message::Ready, Message::Heartbeat(7), Message::Drained];
    encode_frame(Encoding::Binary, &sent, &mut frame);
    let (mut a, b) = tokio::io::duplex(1024);
    let mut r = FrameReader::new(b);
    // Two bytes of the length, then the rest of the length and half the
    // payload, each followed by a read that is given up.
    for piece in [&frame[..2], &frame[2..4 + (frame.len() - 4) / 2]] {
        a.write_all(piece).await.unwrap();
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(20), r.read()).await;
        assert!(gave_up.is_err(), "the frame is not complete yet");
    }
    a.write_all(&frame[4 + (frame.len() - 4) / 2..])
        .await
        .unwrap();
    let (encoding, messages) = r.read().await.unwrap().unwrap();
    assert_eq!(encoding, Encoding::Binary);
    assert_eq!(messages, sent);
}

/// A peer that announces a large frame and sends little costs the reader
/// what it sent, not what it announced; a large frame's buffer is given
/// back after it.
#[tokio::test]
async fn the_buffer_grows_with_the_bytes_not_the_announced_length() {
    let (mut a, b) = tokio::io::duplex(1 << 20);
    let mut r = FrameReader::new(b);
    a.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
    a.write_all(&[2]).await.unwrap();
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(20), r.read()).await;
    assert!(gave_up.is_err(), "the frame is not complete yet");
    assert!(r.buffered() <= 64 << 10, "{} bytes held", r.buffered());
    // A real 3 MiB frame is read whole; the next small one frees its buffer.
    let (mut a, b) = tokio::io::duplex(1 << 20);
    let mut r = FrameReader::new(b);
    let big = Message::Error {
        code: 2,
        message: "x".repeat(3 << 20),
    };
    let mut frame = Vec::new();
    encode_frame(Encoding::Json, std::slice::from_ref(&big), &mut frame);
    encode_frame(Encoding::Json, &[Message::Ready], &mut frame);
    let writer = tokio::spawn(async move { a.write_all(&frame).await.unwrap() });
    assert_eq!(r.read().await.unwrap().unwrap().1, [big]);
    assert!(r.buffered() >= 3 << 20);
    assert_eq!(r.read().await.unwrap().unwrap().1, [Message::Ready]);
    assert!(r.buffered() < 1 << 20, "{} bytes kept", r.buffered());
    writer.await.unwrap();
}
