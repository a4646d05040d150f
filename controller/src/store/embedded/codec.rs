//! How records, events and leases are laid out as bytes in the redb tables.

use super::*;

/// Record layout: create_revision, mod_revision, version, lease (i64 LE each), then the value.
pub(super) fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + kv.value.len());
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&kv.value);
    out
}

pub(super) fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    if bytes.len() < 32 {
        return Err(StoreError::Backend(format!("record of {key} is truncated")));
    }
    let n = |i: usize| i64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: n(0),
        mod_revision: n(1),
        version: n(2),
        lease: n(3),
        value: bytes[32..].to_vec(),
    })
}

/// Event layout: kind (0 put, 1 delete), revision, key length, key, record.
pub(super) fn encode_event(event: &WatchEvent) -> Vec<u8> {
    let (kind, revision, key, record) = match event {
        WatchEvent::Put(kv) => (0u8, kv.mod_revision, &kv.key, Some(kv)),
        WatchEvent::Delete {
            key,
            revision,
            prev,
        } => (1u8, *revision, key, prev.as_ref()),
        WatchEvent::Progress { .. } => unreachable!("progress events are never logged"),
    };
    let mut out = vec![kind];
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    if let Some(kv) = record {
        out.extend_from_slice(&encode_record(kv));
    }
    out
}

pub(super) fn decode_event(bytes: &[u8]) -> Result<WatchEvent> {
    let bad = || StoreError::Backend("event log entry is truncated".into());
    let kind = *bytes.first().ok_or_else(bad)?;
    let revision = i64::from_le_bytes(
        bytes
            .get(1..9)
            .ok_or_else(bad)?
            .try_into()
            .expect("8 bytes"),
    );
    let klen = u32::from_le_bytes(
        bytes
            .get(9..13)
            .ok_or_else(bad)?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let key =
        std::str::from_utf8(bytes.get(13..13 + klen).ok_or_else(bad)?).map_err(backend_err)?;
    let rest = &bytes[13 + klen..];
    match kind {
        0 => Ok(WatchEvent::Put(decode_record(key, rest)?)),
        _ => Ok(WatchEvent::Delete {
            key: key.to_string(),
            revision,
            prev: if rest.is_empty() {
                None
            } else {
                Some(decode_record(key, rest)?)
            },
        }),
    }
}

pub(super) fn lease_value(ttl_ms: i64, expires_ms: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&ttl_ms.to_le_bytes());
    out[8..].copy_from_slice(&expires_ms.to_le_bytes());
    out
}

pub(super) fn lease_ttl(v: &[u8]) -> i64 {
    i64::from_le_bytes(v[..8].try_into().expect("8 bytes"))
}

pub(super) fn lease_expiry(v: &[u8]) -> i64 {
    i64::from_le_bytes(v[8..16].try_into().expect("8 bytes"))
}
