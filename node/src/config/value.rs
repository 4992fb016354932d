//! Values given on the command line, turned into JSON the way `ipfs config` does.

use serde_json::Value;

/// A string unless `as_json` or `as_bool` says otherwise.
pub fn parse_value(raw: &str, as_json: bool, as_bool: bool) -> Result<Value, String> {
    if as_json {
        serde_json::from_str(raw).map_err(|e| format!("failed to unmarshal json: {e}"))
    } else if as_bool {
        match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => Err(format!("\"{other}\" is not a boolean (true or false)")),
        }
    } else {
        Ok(Value::String(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_json_and_bools() {
        assert_eq!(
            parse_value("x", false, false),
            Ok(Value::String("x".into()))
        );
        assert_eq!(parse_value("[1]", true, false), Ok(serde_json::json!([1])));
        assert_eq!(parse_value("true", false, true), Ok(Value::Bool(true)));
        assert!(parse_value("{", true, false).is_err());
        assert!(parse_value("yes", false, true).is_err());
    }
}
