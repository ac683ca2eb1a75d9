//! The attribute protocol: AttrDecoder fed in random chunk splits (every split must give
//! the lists and the failure of a single whole feed), then every list through each decoder
//! of a peer's reply (trivial-rewrite resolve/rewrite, a delivery agent's status, bounce and
//! flush status, verify, proxymap open/lookup), the announcement checks, and the request decoders the test peers
//! use. What decodes must survive an encode/decode round trip.
//!
//! Input: two control bytes (decoder limits, chunk-split seed), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::daemon::scan_final_reply;
use oqmgr::proto::attr::{AttrDecoder, AttrList, AttrMessage, DecodeLimits};
use oqmgr::proto::bounce::{AppendRequest, FlushRequest, StatusReply};
use oqmgr::proto::deliver::{DeliveryOutcome, DeliveryReply, DeliveryRequest};
use oqmgr::proto::flush::FlushAdd;
use oqmgr::proto::msg_stats::MsgStats;
use oqmgr::proto::protocol::Protocol;
use oqmgr::proto::proxymap::{LookupReply, OpenReply, ProxyRequest};
use oqmgr::proto::rewrite::{ResolveReply, ResolveRequest, RewriteReply, RewriteRequest};
use oqmgr::proto::status::StatusRequest;
use oqmgr::proto::verify::{VerifyReply, VerifyUpdate};
use oqmgr::proto::{base64, deliver};

const PROTOCOLS: [Protocol; 6] = [
    Protocol::DeliveryRequest,
    Protocol::TrivialRewrite,
    Protocol::DeliveryStatus,
    Protocol::QueueFlush,
    Protocol::AddressVerification,
    Protocol::Proxymap,
];

/// What a decoder made of a stream: the lists before any failure, whether it failed, and
/// (when it did not) what is left over at the end of input.
#[derive(Debug, PartialEq)]
struct Outcome {
    lists: Vec<AttrList>,
    failed: bool,
    eof_warning: Option<String>,
}

fn decode(limits: DecodeLimits, stream: &[u8], chunk_len: &mut dyn FnMut() -> usize) -> Outcome {
    let mut decoder = AttrDecoder::new(limits);
    let mut lists = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(chunk_len().clamp(1, rest.len()));
        rest = after;
        let mut input = chunk;
        while !input.is_empty() {
            match decoder.push(input) {
                Ok((used, list)) => {
                    assert!(used > 0 && used <= input.len(), "push consumed {used}");
                    lists.extend(list);
                    input = &input[used..];
                }
                Err(e) => {
                    let _ = e.warning("private/smtp");
                    // A failed stream stays failed.
                    assert!(decoder.push(b"x\0").is_err());
                    assert!(decoder.finish().is_err());
                    return Outcome {
                        lists,
                        failed: true,
                        eof_warning: None,
                    };
                }
            }
        }
    }
    let eof_warning = decoder.eof_warning("private/smtp");
    assert_eq!(eof_warning.is_none(), decoder.finish().is_ok());
    assert_eq!(decoder.is_idle(), decoder.finish().is_ok());
    Outcome {
        lists,
        failed: false,
        eof_warning,
    }
}

/// `decode(encode(x)) == x` for whatever decoded.
fn round_trip<T: AttrMessage + PartialEq + std::fmt::Debug>(
    decoded: &T,
    decode: impl Fn(&AttrList) -> Result<T, oqmgr::proto::attr::AttrError>,
) {
    let bytes = decoded.to_bytes();
    let lists = AttrDecoder::default().feed(&bytes).expect("own encoding");
    assert_eq!(lists.len(), 1, "one list per message");
    assert_eq!(decode(&lists[0]).as_ref(), Ok(decoded));
}

fn check_list(list: &AttrList) {
    let path = "private/smtp";
    if let Ok(reply) = ResolveReply::decode(list) {
        round_trip(&reply, ResolveReply::decode);
    }
    if let Ok(reply) = RewriteReply::decode(list) {
        round_trip(&reply, RewriteReply::decode);
    }
    let reply = DeliveryReply::decode(list);
    let _ = DeliveryOutcome::of(&reply);
    let scanned = scan_final_reply(list, path);
    match &reply {
        Ok(reply) => {
            // The daemon's field-by-field scan agrees with the strict decoder.
            assert_eq!(scanned.status, Some(reply.status));
            assert!(scanned.warnings.is_empty());
            let _ = reply.outcome();
            round_trip(reply, DeliveryReply::decode);
        }
        Err(e) => {
            let _ = e.warning(path);
        }
    }
    if let Ok(reply) = StatusReply::decode(list) {
        round_trip(&reply, StatusReply::decode);
    }
    if let Ok(reply) = VerifyReply::decode(list) {
        round_trip(&reply, VerifyReply::decode);
    }
    if let Ok(reply) = OpenReply::decode(list) {
        round_trip(&reply, OpenReply::decode);
    }
    if let Ok(reply) = LookupReply::decode(list) {
        round_trip(&reply, LookupReply::decode);
    }
    for protocol in PROTOCOLS {
        let _ = protocol.check_announcement(list);
    }
    let _ = StatusRequest::matches(list);
    // Requests: decoded by the test peers, and the same codecs.
    if let Ok(request) = ResolveRequest::decode(list) {
        round_trip(&request, ResolveRequest::decode);
    }
    if let Ok(request) = RewriteRequest::decode(list) {
        round_trip(&request, RewriteRequest::decode);
    }
    if let Ok(request) = FlushRequest::decode(list) {
        round_trip(&request, FlushRequest::decode);
    }
    if let Ok(request) = AppendRequest::decode(list) {
        round_trip(&request, AppendRequest::decode);
    }
    if let Ok(request) = FlushAdd::decode(list) {
        round_trip(&request, FlushAdd::decode);
    }
    if let Ok(request) = VerifyUpdate::decode(list) {
        round_trip(&request, VerifyUpdate::decode);
    }
    if let Ok(request) = ProxyRequest::decode(list) {
        round_trip(&request, ProxyRequest::decode);
    }
    let _ = deliver::DeliveryRequest::decode_recipient(list);
    for (_, value) in list.attrs() {
        let _ = base64::decode(value);
        let _ = MsgStats::from_base64(value);
    }
}

fuzz_target!(|data: &[u8]| {
    let [limits_sel, seed, stream @ ..] = data else {
        return;
    };
    let limits = match limits_sel & 3 {
        0 => DecodeLimits::default(),
        1 => DecodeLimits {
            max_attr_bytes: 16,
            max_list_bytes: 64,
            max_attrs: 3,
        },
        2 => DecodeLimits {
            max_attr_bytes: 256,
            max_list_bytes: 128,
            max_attrs: 16,
        },
        _ => DecodeLimits {
            max_attr_bytes: usize::from(limits_sel >> 2),
            max_list_bytes: usize::from(limits_sel >> 2) * 4,
            max_attrs: usize::from(limits_sel >> 4),
        },
    };
    let whole = decode(limits, stream, &mut || usize::MAX);
    let mut state = u32::from(*seed) | 0x100;
    let mut next = || {
        // xorshift: a reproducible split from the seed byte, chunks of 1..=8 mostly.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if state % 16 == 0 {
            (state >> 8) as usize % 512
        } else {
            (state % 8) as usize + 1
        }
    };
    let split = decode(limits, stream, &mut next);
    assert_eq!(split, whole, "a chunk split changed the decoded stream");
    for list in &whole.lists {
        check_list(list);
    }
    if let Ok(request) = DeliveryRequest::decode(&whole.lists) {
        let bytes = request.to_bytes();
        let lists = AttrDecoder::default().feed(&bytes).expect("own encoding");
        assert_eq!(DeliveryRequest::decode(&lists), Ok(request));
    }
});
