//! JSON for proof headers and claims: like `serde_json::Value`, but a
//! duplicate member name anywhere is an error. Two `htm` or two `jwk`
//! members would let different readers see different proofs.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub type Object = Map<String, Value>;

/// Parses a JSON object, refusing duplicate member names at any depth.
pub fn strict_object(bytes: &[u8]) -> Result<Object, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer
        .deserialize_any(StrictVisitor)
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err("not a JSON object".to_owned()),
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate member `{key}`")));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_like_serde_json() {
        let text = br#"{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}"#;
        assert_eq!(
            Value::Object(strict_object(text).unwrap()),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        for text in [
            r#"{"htm": "GET", "htm": "POST"}"#,
            r#"{"jwk": {"x": "a", "x": "b"}}"#,
            r#"{"a": [{"k": 1, "k": 1}]}"#,
        ] {
            let error = strict_object(text.as_bytes()).unwrap_err();
            assert!(error.contains("duplicate member"), "{text}: {error}");
        }
    }

    #[test]
    fn only_one_object() {
        for text in ["[1]", "\"x\"", "{} {}", "{", ""] {
            assert!(strict_object(text.as_bytes()).is_err(), "{text}");
        }
    }
}
