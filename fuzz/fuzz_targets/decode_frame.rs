//! Any bytes a worker may send: read as frames, decoded, never a panic or a
//! hang; what decodes encodes back to something that decodes the same.
#![no_main]

use botfleet_protocol::{FrameReader, decode_payload, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The payload decoder alone.
    if let Ok((encoding, messages)) = decode_payload(data) {
        let mut frame = Vec::new();
        encode_frame(encoding, &messages, &mut frame);
        let (again_encoding, again) = decode_payload(&frame[4..]).expect("our own frame decodes");
        assert_eq!(again_encoding, encoding);
        assert_eq!(again, messages);
    }
    // The same bytes as a stream of frames, with a small size limit.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = FrameReader::new(data).max_frame(4096);
        while let Ok(Some(_)) = reader.read().await {}
    });
});
