//! Deploy notifications (Honeybadger's `POST /v1/deploys`, Rollbar's `POST /api/1/deploy/`),
//! as their many senders write them: a JSON object (flat, or wrapped in `deploy`), a form
//! (`deploy[environment]=...` or `environment=...`), or `multipart/form-data` (the GitHub
//! Actions), whatever `Content-Type` says (rollbar-gem labels its JSON a form). What inlet keeps
//! is the deploy's fields as one JSON object, the request's key left out.

use serde_json::{Map, Value};

use super::Translated;

/// A deploy's fields, read from `body` (sent as `media_type`, the whole `Content-Type`), with
/// the members of `wrapper` (`deploy`) lifted out of it and `key` (the secret) taken out and
/// returned beside them. Fails, with why, when the body is none of the shapes above.
pub fn fields(
    body: &[u8],
    media_type: &str,
    wrapper: &str,
    key: &str,
) -> Result<(Map<String, Value>, Option<String>), String> {
    let text = body.trim_ascii_start();
    let pairs: Vec<(String, String)> = if text.starts_with(b"{") {
        return from_json(text, wrapper, key);
    } else if let Some(boundary) = boundary(media_type) {
        multipart(body, &boundary)?
    } else {
        form_urlencoded::parse(body)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    };
    let mut fields = Map::new();
    let mut secret = None;
    for (name, value) in pairs {
        if name == key {
            secret = Some(value);
            continue;
        }
        let name = (name.strip_prefix(wrapper))
            .and_then(|inner| inner.strip_prefix('['))
            .and_then(|inner| inner.strip_suffix(']'))
            .map_or(name.clone(), str::to_owned);
        fields.insert(name, Value::String(value));
    }
    if fields.is_empty() && secret.is_none() {
        return Err("a deploy is a JSON object or a form of its fields".into());
    }
    Ok((fields, secret))
}

/// A deploy as one `deploy` item: the JSON object of its [`fields`] (the `key` left out), and
/// the key it carried.
pub fn item(
    body: &[u8],
    media_type: &str,
    key: &str,
) -> Result<(Translated, Option<String>), String> {
    let (fields, secret) = fields(body, media_type, "deploy", key)?;
    let payload = Value::Object(fields).to_string();
    let item = super::verbatim(
        "deploy",
        "application/json",
        payload.as_bytes(),
        String::new(),
    )
    .expect("a valid item type");
    Ok((item, secret))
}

/// A JSON deploy: its members, or those of its `wrapper` member, the `key` taken out.
fn from_json(
    text: &[u8],
    wrapper: &str,
    key: &str,
) -> Result<(Map<String, Value>, Option<String>), String> {
    let mut object: Map<String, Value> =
        serde_json::from_slice(text).map_err(|e| format!("the deploy is not JSON: {e}"))?;
    let secret = match object.remove(key) {
        Some(Value::String(secret)) => Some(secret),
        _ => None,
    };
    let fields = match object.remove(wrapper) {
        Some(Value::Object(mut inner)) => {
            inner.remove(key);
            inner.extend(object);
            inner
        }
        Some(other) => {
            object.insert(wrapper.to_owned(), other);
            object
        }
        None => object,
    };
    Ok((fields, secret))
}

/// The `boundary` of a `multipart/form-data` media type.
fn boundary(media_type: &str) -> Option<String> {
    let mut parts = media_type.split(';');
    let essence = parts.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        (name.trim().eq_ignore_ascii_case("boundary"))
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The text fields of a `multipart/form-data` body: each part's `name` and its value.
fn multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let Some((headers, value)) = part.split_once("\r\n\r\n") else {
            return Err("a multipart part has no blank line after its headers".into());
        };
        let name = headers.lines().find_map(|line| {
            let (header, rest) = line.split_once(':')?;
            if !header.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            rest.split(';').find_map(|param| {
                let value = param.trim().strip_prefix("name=")?;
                Some(value.trim_matches('"').to_owned())
            })
        });
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            fields.push((name, value.to_owned()));
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(body: &str, media_type: &str) -> (Value, Option<String>) {
        let (fields, key) = fields(body.as_bytes(), media_type, "deploy", "api_key").unwrap();
        (Value::Object(fields), key)
    }

    #[test]
    fn every_shape_of_a_deploy_reads_to_the_same_fields() {
        let expected = json!({"environment": "production", "revision": "7cd4bac1"});
        let shapes = [
            // Honeybadger's Ruby gem: flat JSON, with the key in a header.
            (r#"{"environment":"production","revision":"7cd4bac1"}"#, "application/json", None),
            // The JS plugins and the Go CLI: wrapped in `deploy`.
            (
                r#"{"deploy":{"environment":"production","revision":"7cd4bac1"}}"#,
                "application/json",
                None,
            ),
            // JSON labelled a form (rollbar-gem).
            (
                r#" {"api_key":"k","environment":"production","revision":"7cd4bac1"}"#,
                "application/x-www-form-urlencoded",
                Some("k"),
            ),
            // Ansible and the documented parameters: a form.
            (
                "deploy%5Benvironment%5D=production&deploy%5Brevision%5D=7cd4bac1&api_key=k",
                "application/x-www-form-urlencoded",
                Some("k"),
            ),
            // The GitHub Action: multipart.
            (
                "--XyZ\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\nk\r\n\
                 --XyZ\r\nContent-Disposition: form-data; name=\"deploy[environment]\"\r\n\r\nproduction\r\n\
                 --XyZ\r\nContent-Disposition: form-data; name=\"deploy[revision]\"\r\n\r\n7cd4bac1\r\n--XyZ--\r\n",
                "multipart/form-data; boundary=XyZ",
                Some("k"),
            ),
        ];
        for (body, media_type, key) in shapes {
            assert_eq!(
                read(body, media_type),
                (expected.clone(), key.map(str::to_owned)),
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_that_is_no_deploy_is_refused() {
        assert!(fields(b"{nope", "application/json", "deploy", "api_key").is_err());
        assert!(fields(b"", "", "deploy", "api_key").is_err());
    }
}
