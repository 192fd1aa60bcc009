//! The `Authorization` header of a SigV4 request: who signed, for which day, region and
//! service, which headers, and the signature. Parsed before verification so that the caller can
//! look the secret up by access key id.

use chrono::NaiveDate;

use super::{SigV4Error, ALGORITHM};

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id, to find the secret by.
    pub access_key_id: String,
    /// The day of the credential scope, `yyyymmdd`, as sent (it is signed over as text).
    pub date: String,
    /// The region of the credential scope; any is accepted, as it is only part of the scope.
    pub region: String,
    /// The service of the credential scope, checked by [`super::verify`].
    pub service: String,
    /// The signed headers: lowercase, sorted, distinct, as SigV4 lists them.
    pub signed_headers: Vec<String>,
    /// The signature, decoded from its 64 hex digits.
    pub signature: [u8; 32],
}

/// Parses an `Authorization` header value. Tolerates what clients vary in: a comma, spaces, or
/// both between the components, in any order, and hex digits in either case. Everything else SigV4
/// fixes (component names, the five parts of the credential, `aws4_request`) must be exact.
pub fn parse_authorization(header_value: &str) -> Result<Authorization, SigV4Error> {
    let value = header_value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(SigV4Error::UnsupportedAlgorithm(
            algorithm.chars().take(40).collect(),
        ));
    }
    let malformed = |what: String| SigV4Error::Malformed(what);

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
    {
        let Some((name, value)) = part.split_once('=') else {
            return Err(malformed(format!("expected name=value, got {part:?}")));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed(format!("unknown component {name:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("{name} given more than once")));
        }
    }
    let missing = |name: &str| malformed(format!("missing {name}=…"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;

    let (access_key_id, date, region, service) = parse_credential(credential)?;
    Ok(Authorization {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: parse_signature(signature)?,
    })
}

/// `AKID/yyyymmdd/region/service/aws4_request`, every part non-empty.
fn parse_credential(credential: &str) -> Result<(&str, &str, &str, &str), SigV4Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts.as_slice() else {
        return Err(SigV4Error::Malformed(format!(
            "Credential {credential:?} is not access-key-id/yyyymmdd/region/service/aws4_request"
        )));
    };
    if [access_key_id, date, region, service]
        .iter()
        .any(|p| p.is_empty())
    {
        return Err(SigV4Error::Malformed(format!(
            "Credential {credential:?} has an empty part"
        )));
    }
    if *terminator != "aws4_request" {
        return Err(SigV4Error::Malformed(format!(
            "Credential must end with aws4_request, not {terminator:?}"
        )));
    }
    let is_day = date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && NaiveDate::parse_from_str(date, "%Y%m%d").is_ok();
    if !is_day {
        return Err(SigV4Error::Malformed(format!(
            "Credential date {date:?} is not a day of the form yyyymmdd"
        )));
    }
    Ok((access_key_id, date, region, service))
}

/// `a;b;c`: lowercase header names, sorted and distinct, as every SigV4 signer writes them. A
/// list in another order could not be checked against what the client signed, so it is refused.
fn parse_signed_headers(list: &str) -> Result<Vec<String>, SigV4Error> {
    let names: Vec<&str> = list.split(';').collect();
    for name in &names {
        let is_token = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
        if !is_token {
            return Err(SigV4Error::Malformed(format!(
                "SignedHeaders {list:?}: {name:?} is not a lowercase header name"
            )));
        }
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SigV4Error::Malformed(format!(
            "SignedHeaders {list:?} is not sorted without repeats"
        )));
    }
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// 64 hex digits, either case.
fn parse_signature(hex: &str) -> Result<[u8; 32], SigV4Error> {
    let wrong = || SigV4Error::Malformed("Signature must be 64 hex digits".to_owned());
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return Err(wrong());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_value(pair[0]).ok_or_else(wrong)?;
        let low = hex_value(pair[1]).ok_or_else(wrong)?;
        *byte = (high << 4) | low;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::mem::discriminant;

    use rstest::rstest;

    use super::*;

    const SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn get_vanilla() -> Authorization {
        Authorization {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: parse_signature(SIG).unwrap(),
        }
    }

    #[rstest]
    // As botocore and aws-c-auth write it.
    #[case("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")]
    // Commas without spaces, as some SDKs write it.
    #[case("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date,Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")]
    // Spaces only, several of them, surrounding whitespace, components in another order.
    #[case("  AWS4-HMAC-SHA256   Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31  SignedHeaders=host;x-amz-date \t Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request ")]
    // A trailing comma, spaces before commas.
    #[case("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request , SignedHeaders=host;x-amz-date , Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31,")]
    // Uppercase hex.
    #[case("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5FA00FA31553B73EBF1942676E86291E8372FF2A2260956D9B8AAE1D763FBF31")]
    fn parses_the_forms_clients_send(#[case] header: &str) {
        assert_eq!(parse_authorization(header).unwrap(), get_vanilla());
    }

    #[test]
    fn keeps_region_service_and_every_signed_header() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDHANGAREXAMPLE/20250314/eu-west-1/airflow/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=\
             869a526e363ca0834e5392ba605d130d6f55fd25aab79b0b92cced847fe5162e",
        )
        .unwrap();
        assert_eq!(auth.access_key_id, "AKIDHANGAREXAMPLE");
        assert_eq!(auth.date, "20250314");
        assert_eq!(auth.region, "eu-west-1");
        assert_eq!(auth.service, "airflow");
        assert_eq!(
            auth.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-security-token"]
        );
        assert_eq!(auth.signature[..2], [0x86, 0x9a]);
    }

    const CRED: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    const HDRS: &str = "SignedHeaders=host;x-amz-date";

    fn unsupported() -> SigV4Error {
        SigV4Error::UnsupportedAlgorithm(String::new())
    }

    fn malformed() -> SigV4Error {
        SigV4Error::Malformed(String::new())
    }

    #[rstest]
    #[case::empty("", unsupported(), "\"\"")]
    #[case::sigv2(
        "AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
        unsupported(),
        "\"AWS\""
    )]
    #[case::sigv4a(&format!("AWS4-ECDSA-P256-SHA256 {CRED}, {HDRS}, Signature={SIG}"), unsupported(), "AWS4-ECDSA-P256-SHA256")]
    #[case::bearer("Bearer abc.def", unsupported(), "Bearer")]
    #[case::algorithm_case(&format!("aws4-hmac-sha256 {CRED}, {HDRS}, Signature={SIG}"), unsupported(), "aws4-hmac-sha256")]
    #[case::algorithm_only("AWS4-HMAC-SHA256", malformed(), "missing Credential")]
    #[case::no_signature(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}"), malformed(), "missing Signature")]
    #[case::no_signed_headers(&format!("AWS4-HMAC-SHA256 {CRED}, Signature={SIG}"), malformed(), "missing SignedHeaders")]
    #[case::no_credential(&format!("AWS4-HMAC-SHA256 {HDRS}, Signature={SIG}"), malformed(), "missing Credential")]
    #[case::twice(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, {HDRS}, Signature={SIG}"), malformed(), "SignedHeaders given more than once")]
    #[case::unknown_component(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature={SIG}, Extra=1"), malformed(), "unknown component \"Extra\"")]
    #[case::component_name_case(&format!("AWS4-HMAC-SHA256 credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "unknown component \"credential\"")]
    #[case::no_equals(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature {SIG}"), malformed(), "expected name=value, got \"Signature\"")]
    #[case::credential_four_parts(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "is not access-key-id/yyyymmdd/region/service/aws4_request")]
    #[case::credential_six_parts(&format!("AWS4-HMAC-SHA256 Credential=AKID/EXAMPLE/20150830/us-east-1/service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "is not access-key-id/yyyymmdd/region/service/aws4_request")]
    #[case::credential_empty_key(&format!("AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "has an empty part")]
    #[case::credential_empty_region(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830//service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "has an empty part")]
    #[case::credential_terminator(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_requests, {HDRS}, Signature={SIG}"), malformed(), "must end with aws4_request")]
    #[case::credential_date_with_dashes(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015-08-30/us-east-1/service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "is not a day")]
    #[case::credential_date_not_a_day(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150230/us-east-1/service/aws4_request, {HDRS}, Signature={SIG}"), malformed(), "is not a day")]
    #[case::signed_headers_empty(&format!("AWS4-HMAC-SHA256 {CRED}, SignedHeaders=, Signature={SIG}"), malformed(), "\"\" is not a lowercase header name")]
    #[case::signed_headers_empty_name(&format!("AWS4-HMAC-SHA256 {CRED}, SignedHeaders=host;;x-amz-date, Signature={SIG}"), malformed(), "is not a lowercase header name")]
    #[case::signed_headers_uppercase(&format!("AWS4-HMAC-SHA256 {CRED}, SignedHeaders=Host;x-amz-date, Signature={SIG}"), malformed(), "\"Host\" is not a lowercase header name")]
    #[case::signed_headers_unsorted(&format!("AWS4-HMAC-SHA256 {CRED}, SignedHeaders=x-amz-date;host, Signature={SIG}"), malformed(), "is not sorted without repeats")]
    #[case::signed_headers_repeated(&format!("AWS4-HMAC-SHA256 {CRED}, SignedHeaders=host;host;x-amz-date, Signature={SIG}"), malformed(), "is not sorted without repeats")]
    #[case::signature_short(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature={}", &SIG[..63]), malformed(), "64 hex digits")]
    #[case::signature_long(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature={SIG}0"), malformed(), "64 hex digits")]
    #[case::signature_not_hex(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature={}g", &SIG[..63]), malformed(), "64 hex digits")]
    #[case::signature_empty(&format!("AWS4-HMAC-SHA256 {CRED}, {HDRS}, Signature="), malformed(), "64 hex digits")]
    fn refuses_malformed_headers(
        #[case] header: &str,
        #[case] expected: SigV4Error,
        #[case] says: &str,
    ) {
        let err = parse_authorization(header).unwrap_err();
        assert_eq!(discriminant(&err), discriminant(&expected), "{err}");
        assert!(
            err.to_string().contains(says),
            "{err:?} should say {says:?}"
        );
    }
}
