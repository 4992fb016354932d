//! Kubo-style query arguments: positional `arg` values, repeated, and named options whose booleans
//! may be given as `flag`, `flag=true` or `flag=false`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cid::Cid;

use super::error::ApiError;

/// The query string of a Kubo RPC call.
#[derive(Debug, Default, Clone)]
pub(crate) struct Args {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Args {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Args::parse(parts.uri.query().unwrap_or("")))
    }
}

impl Args {
    /// Parses a query string; `+` and percent-escapes are decoded.
    pub(crate) fn parse(query: &str) -> Args {
        let pairs = form_urlencoded_pairs(query);
        Args { pairs }
    }

    /// All positional arguments, in order.
    pub(crate) fn args(&self) -> Vec<&str> {
        self.all("arg")
    }

    /// The first positional argument, or a client error naming what is missing.
    pub(crate) fn arg(&self, what: &str) -> Result<&str, ApiError> {
        self.get("arg")
            .ok_or_else(|| ApiError::client(format!("argument \"{what}\" is required")))
    }

    /// Every value given for `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean option: absent gives `default`, a bare flag or `true`/`1` gives true.
    pub(crate) fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some("" | "true" | "1" | "True" | "TRUE") => Ok(true),
            Some("false" | "0" | "False" | "FALSE") => Ok(false),
            Some(other) => Err(ApiError::client(format!(
                "option \"{name}\": \"{other}\" is not a boolean (true or false)"
            ))),
        }
    }

    /// A numeric option.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::client(format!("option \"{name}\": \"{v}\" is not a number"))
            }),
        }
    }
}

/// Parses a CID or an `/ipfs/CID[/path]` path into the CID and the rest of the path.
pub(crate) fn parse_ipfs_path(s: &str) -> Result<(Cid, Vec<String>), ApiError> {
    let trimmed = s.strip_prefix("/ipfs/").unwrap_or(s);
    let mut parts = trimmed.split('/').filter(|p| !p.is_empty());
    let first = parts
        .next()
        .ok_or_else(|| ApiError::client(format!("invalid path \"{s}\": no CID")))?;
    let cid = Cid::try_from(first).map_err(|e| {
        ApiError::client(format!(
            "invalid path \"{s}\": \"{first}\" is not a valid CID: {e}"
        ))
    })?;
    Ok((cid, parts.map(str::to_string).collect()))
}

/// Parses a bare CID argument.
pub(crate) fn parse_cid(s: &str) -> Result<Cid, ApiError> {
    let (cid, rest) = parse_ipfs_path(s)?;
    if !rest.is_empty() {
        return Err(ApiError::client(format!(
            "\"{s}\" is a path; this command takes a CID"
        )));
    }
    Ok(cid)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_args_and_flags() {
        let a = Args::parse("arg=Qm1&arg=%2Fipfs%2Fx&recursive&progress=false&offset=10");
        assert_eq!(a.args(), vec!["Qm1", "/ipfs/x"]);
        assert!(a.flag("recursive", false).unwrap());
        assert!(!a.flag("progress", true).unwrap());
        assert!(a.flag("quiet", true).unwrap());
        assert_eq!(a.number::<u64>("offset").unwrap(), Some(10));
        assert!(Args::parse("offset=x").number::<u64>("offset").is_err());
        assert!(Args::parse("r=maybe").flag("r", false).is_err());
    }

    #[test]
    fn percent_edge_cases_never_panic() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn paths_and_bad_cids() {
        let (cid, rest) =
            parse_ipfs_path("/ipfs/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH/a/b").unwrap();
        assert_eq!(
            cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(rest, vec!["a", "b"]);
        let e = parse_cid("not-a-cid").unwrap_err();
        assert!(e.message.contains("not a valid CID"));
    }
}
