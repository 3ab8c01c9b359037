//! A bounded AMF0 decoder producing `rml_amf0` values.
//!
//! `rml_amf0`'s own decoder recurses without a depth limit (a message of
//! nested object markers overflows the stack), so network input is decoded
//! here instead: iterative bounds on depth and on the input, lossy UTF-8, and
//! every AMF0 type a real encoder sends. Encoding stays with `rml_amf0`.

use std::collections::HashMap;

use rml_rtmp::rml_amf0::Amf0Value;

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 16;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;
const UNSUPPORTED: u8 = 0x0d;
const XML_DOCUMENT: u8 = 0x0f;
const TYPED_OBJECT: u8 = 0x10;

/// Decodes a sequence of AMF0 values (a command or data message body).
///
/// Decoding stops at the end of the input or at a top-level object-end marker
/// (some encoders pad with one).
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, String> {
    let mut r = Reader { data, pos: 0 };
    let mut values = Vec::new();
    while let Some(&marker) = r.data.get(r.pos) {
        if marker == OBJECT_END {
            break;
        }
        values.push(r.value(0)?);
    }
    Ok(values)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let pos = self.pos;
        let (s, end) = pos
            .checked_add(n)
            .and_then(|end| Some((self.data.get(pos..end)?, end)))
            .ok_or_else(|| format!("AMF0 value truncated at byte {pos}"))?;
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let pos = self.pos;
        self.take(N)?
            .try_into()
            .map_err(|_| format!("AMF0 value truncated at byte {pos}"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("AMF0 nesting deeper than {MAX_DEPTH}"));
        }
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::Utf8String(self.string(len)?)
            }
            LONG_STRING | XML_DOCUMENT => {
                let len = self.u32()? as usize;
                Amf0Value::Utf8String(self.string(len)?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth)?),
            ECMA_ARRAY => {
                // The count is advisory; the list ends with the end marker.
                let _count = self.u32()?;
                Amf0Value::Object(self.properties(depth)?)
            }
            TYPED_OBJECT => {
                let len = usize::from(self.u16()?);
                let _class = self.take(len)?;
                Amf0Value::Object(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32()? as usize;
                // Every value takes at least one byte: never trust the count further.
                let mut values = Vec::with_capacity(count.min(self.data.len() - self.pos));
                for _ in 0..count {
                    values.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(values)
            }
            DATE => {
                let millis = self.f64()?;
                let _tz = self.u16()?;
                Amf0Value::Number(millis)
            }
            NULL => Amf0Value::Null,
            UNDEFINED | UNSUPPORTED => Amf0Value::Undefined,
            REFERENCE => {
                let _index = self.u16()?;
                Amf0Value::Undefined
            }
            other => return Err(format!("unknown AMF0 marker 0x{other:02x}")),
        })
    }

    fn properties(&mut self, depth: usize) -> Result<HashMap<String, Amf0Value>, String> {
        let mut map = HashMap::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 {
                match self.u8()? {
                    OBJECT_END => return Ok(map),
                    // An empty key with a value: tolerated, the value is dropped.
                    _ => {
                        self.pos -= 1;
                        let _ = self.value(depth + 1)?;
                        continue;
                    }
                }
            }
            let key = self.string(len)?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
    }
}

/// A number property of an AMF0 object, if present and numeric (or a numeric string).
pub fn number(props: &HashMap<String, Amf0Value>, key: &str) -> Option<f64> {
    match props.get(key)? {
        Amf0Value::Number(n) if n.is_finite() => Some(*n),
        Amf0Value::Utf8String(s) => s.trim().parse().ok(),
        Amf0Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A string property of an AMF0 object.
pub fn string<'a>(props: &'a HashMap<String, Amf0Value>, key: &str) -> Option<&'a str> {
    match props.get(key)? {
        Amf0Value::Utf8String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(values: Vec<Amf0Value>) -> Vec<u8> {
        rml_rtmp::rml_amf0::serialize(&values).expect("serialize")
    }

    #[test]
    fn round_trips_what_rml_amf0_encodes() {
        let mut obj = HashMap::new();
        obj.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        obj.insert("n".to_string(), Amf0Value::Number(3.5));
        obj.insert(
            "arr".to_string(),
            Amf0Value::StrictArray(vec![Amf0Value::Boolean(true), Amf0Value::Null]),
        );
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(obj),
            Amf0Value::Undefined,
        ];
        assert_eq!(decode_all(&enc(values.clone())).expect("decode"), values);
    }

    #[test]
    fn ecma_array_long_string_and_date() {
        let mut data = vec![ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'k', LONG_STRING, 0, 0, 0, 2];
        data.extend_from_slice(b"hi");
        data.extend_from_slice(&[0, 0, OBJECT_END, DATE]);
        data.extend_from_slice(&1.0f64.to_be_bytes());
        data.extend_from_slice(&[0, 0]);
        let v = decode_all(&data).expect("decode");
        let Amf0Value::Object(m) = &v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(m.get("k"), Some(&Amf0Value::Utf8String("hi".into())));
        assert_eq!(v[1], Amf0Value::Number(1.0));
    }

    #[test]
    fn deep_nesting_and_truncation_are_errors_not_crashes() {
        let deep = [STRICT_ARRAY, 0, 0, 0, 1].repeat(100_000);
        assert!(decode_all(&deep).is_err());
        assert!(decode_all(&[STRING, 0, 10, b'a']).is_err());
        assert!(decode_all(&[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x42]).is_err());
    }
}
