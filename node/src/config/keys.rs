//! Dotted config keys (`Addresses.API`), read and written the way `ipfs config` does.

use serde_json::Value;

/// Why a dotted key cannot be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing lives at that key.
    #[error("config key `{0}` does not exist; `tessera config show` lists the keys")]
    NotFound(String),
    /// The key walks through a value that is not an object.
    #[error("config key `{key}`: `{parent}` is not an object, it has no sub-keys")]
    NotAnObject {
        /// The full key.
        key: String,
        /// The part of it that holds a non-object.
        parent: String,
    },
    /// The key is empty or has an empty part (`a..b`).
    #[error("`{0}` is not a config key: use dotted names such as Addresses.API")]
    Malformed(String),
}

fn parts(key: &str) -> Result<Vec<&str>, KeyError> {
    let parts: Vec<&str> = key.split('.').collect();
    if key.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(KeyError::Malformed(key.to_string()));
    }
    Ok(parts)
}

/// The value at a dotted key. Array elements are reached by index (`Addresses.Swarm.0`).
pub fn get_key<'a>(doc: &'a Value, key: &str) -> Result<&'a Value, KeyError> {
    let mut cur = doc;
    for part in parts(key)? {
        cur = match cur {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| KeyError::NotFound(key.to_string()))?;
    }
    Ok(cur)
}

/// Sets a dotted key, creating missing objects on the way as `ipfs config` does. The caller
/// validates the whole document afterwards, so a typo in a key name is refused there.
pub fn set_key(doc: &mut Value, key: &str, value: Value) -> Result<(), KeyError> {
    let parts = parts(key)?;
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| KeyError::Malformed(key.to_string()))?;
    let mut cur = doc;
    let mut walked = String::new();
    for part in path {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        let map = cur.as_object_mut().ok_or_else(|| KeyError::NotAnObject {
            key: key.to_string(),
            parent: walked.clone(),
        })?;
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    match cur {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            Ok(())
        }
        _ => Err(KeyError::NotAnObject {
            key: key.to_string(),
            parent: walked,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_walks_objects_and_arrays() {
        let doc = json!({"Addresses": {"API": "/ip4/1", "Swarm": ["a", "b"]}});
        assert_eq!(get_key(&doc, "Addresses.API").unwrap(), &json!("/ip4/1"));
        assert_eq!(get_key(&doc, "Addresses.Swarm.1").unwrap(), &json!("b"));
        assert_eq!(
            get_key(&doc, "Addresses.Nope"),
            Err(KeyError::NotFound("Addresses.Nope".into()))
        );
        assert_eq!(
            get_key(&doc, "a..b"),
            Err(KeyError::Malformed("a..b".into()))
        );
    }

    #[test]
    fn set_creates_objects_and_refuses_scalars_as_parents() {
        let mut doc = json!({"A": 1});
        set_key(&mut doc, "B.C", json!(true)).unwrap();
        assert_eq!(doc, json!({"A": 1, "B": {"C": true}}));
        assert!(matches!(
            set_key(&mut doc, "A.X", json!(1)),
            Err(KeyError::NotAnObject { .. })
        ));
    }
}
