//! Standard Webhooks signatures, and the secret never showing up in text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_audit::webhook::{
    DEFAULT_TOLERANCE, SecretError, SignatureError, WebhookOptions, WebhookSecret, WebhookSink,
    sign, verify, verify_headers,
};
use gateway_audit::{AuditError, AuditSink};
use gateway_model::WebhookConfig;
use http::{HeaderMap, HeaderValue};

const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn at(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.try_into().unwrap())
}

#[test]
fn the_specification_test_vector_is_reproduced() {
    let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
    assert_eq!(
        sign(&secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
        SPEC_SIGNATURE
    );
    verify(
        &secret,
        SPEC_ID,
        &SPEC_TIMESTAMP.to_string(),
        SPEC_SIGNATURE,
        SPEC_BODY,
        at(SPEC_TIMESTAMP + 10),
        DEFAULT_TOLERANCE,
    )
    .unwrap();
    // The prefix is optional, as in the reference libraries.
    let bare = WebhookSecret::parse(SPEC_SECRET.trim_start_matches("whsec_")).unwrap();
    assert_eq!(
        sign(&bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
        SPEC_SIGNATURE
    );
}

#[test]
fn wrong_secret_tampered_body_and_stale_timestamps_are_refused() {
    let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
    let other = WebhookSecret::from_key(*b"another key of 32 bytes, at all!").unwrap();
    let ts = SPEC_TIMESTAMP.to_string();
    let now = at(SPEC_TIMESTAMP);
    let check = |secret: &WebhookSecret, body: &[u8], now: SystemTime| {
        verify(
            secret,
            SPEC_ID,
            &ts,
            SPEC_SIGNATURE,
            body,
            now,
            DEFAULT_TOLERANCE,
        )
    };
    assert_eq!(check(&secret, SPEC_BODY, now), Ok(()));
    assert_eq!(check(&other, SPEC_BODY, now), Err(SignatureError::Mismatch));
    assert_eq!(
        check(&secret, br#"{"test": 2432232315}"#, now),
        Err(SignatureError::Mismatch)
    );
    // Five minutes either way is fine; a second more is not.
    assert_eq!(check(&secret, SPEC_BODY, at(SPEC_TIMESTAMP + 300)), Ok(()));
    assert_eq!(check(&secret, SPEC_BODY, at(SPEC_TIMESTAMP - 300)), Ok(()));
    assert!(matches!(
        check(&secret, SPEC_BODY, at(SPEC_TIMESTAMP + 301)),
        Err(SignatureError::Stale { .. })
    ));
    assert!(matches!(
        check(&secret, SPEC_BODY, at(SPEC_TIMESTAMP - 301)),
        Err(SignatureError::Stale { .. })
    ));
    // The id and timestamp are signed too.
    assert_eq!(
        verify(
            &secret,
            "msg_other",
            &ts,
            SPEC_SIGNATURE,
            SPEC_BODY,
            now,
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(
            &secret,
            SPEC_ID,
            "1614265331",
            SPEC_SIGNATURE,
            SPEC_BODY,
            now,
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(
            &secret,
            SPEC_ID,
            "soon",
            SPEC_SIGNATURE,
            SPEC_BODY,
            now,
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::BadTimestamp)
    );
}

#[test]
fn headers_may_carry_several_signatures_and_must_all_be_present() {
    let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_static(SPEC_ID));
    headers.insert("webhook-timestamp", HeaderValue::from_static("1614265330"));
    let now = at(SPEC_TIMESTAMP);
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&format!("v1,bm90IGl0 v2,abc garbage {SPEC_SIGNATURE}")).unwrap(),
    );
    assert_eq!(
        verify_headers(&secret, &headers, SPEC_BODY, now, DEFAULT_TOLERANCE),
        Ok(())
    );
    headers.insert(
        "webhook-signature",
        HeaderValue::from_static("v1,not base64!"),
    );
    assert_eq!(
        verify_headers(&secret, &headers, SPEC_BODY, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    headers.remove("webhook-id");
    assert_eq!(
        verify_headers(&secret, &headers, SPEC_BODY, now, DEFAULT_TOLERANCE),
        Err(SignatureError::MissingHeader("webhook-id"))
    );
}

#[test]
fn bad_secrets_are_refused_without_echoing_them() {
    // '-' and '!' are not standard base64: the decoder would name them, we must not.
    let bad = "whsec_Sup3r-S3cret!Value-That-Must-Not-Leak";
    let err = WebhookSecret::parse(bad).unwrap_err();
    assert_eq!(err, SecretError::NotBase64);
    let short = WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err();
    assert_eq!(short, SecretError::KeyLength { bytes: 5 });
    let var = "GATEWAY_TELEMETRY_TEST_UNSET_SECRET_VAR";
    let missing = WebhookSecret::from_env(var).unwrap_err();
    for text in [
        err.to_string(),
        format!("{err:?}"),
        AuditError::from(err.clone()).to_string(),
        short.to_string(),
        missing.to_string(),
    ] {
        assert!(
            !text.contains("S3cret") && !text.contains("Sup3r"),
            "{text}"
        );
        assert!(!text.contains("c2hvcnQ"), "{text}");
    }
    assert!(missing.to_string().contains(var));
}

#[tokio::test]
async fn debug_output_and_errors_never_contain_the_secret() {
    let key_b64 = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
    let secret_debug = format!("{secret:?}");
    assert_eq!(secret_debug, "WebhookSecret(<redacted>)");

    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        url: "http://127.0.0.1:9/audit".into(),
        secret_env: "AUDIT_WEBHOOK_SECRET".into(),
        spool_dir: dir.path().join("spool"),
        batch_size: 10,
        queue_capacity: 10,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    };
    let sink = WebhookSink::start_with(&config, secret.clone(), WebhookOptions::default()).unwrap();
    let mut texts = vec![
        secret_debug,
        format!("{sink:?}"),
        format!("{sink:#?}"),
        format!("{config:?}"),
        format!("{:?}", WebhookOptions::default()),
        format!("{:?}", sink.report()),
    ];
    // Every error the sink can give at start: insecure URL, bad URL.
    for url in ["http://audit.example.com/hook", "not a url", "ftp://x/y"] {
        let bad = WebhookConfig {
            url: url.into(),
            ..config.clone()
        };
        let err = WebhookSink::start(&bad, secret.clone()).unwrap_err();
        assert!(matches!(err, AuditError::Url(_)), "{err}");
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
    }
    sink.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    let entry: gateway_model::AuditEntry = serde_json::from_value(serde_json::json!({
        "id": "0190d5c6-0000-7000-8000-000000000000",
        "timestamp": "2024-07-01T00:00:00Z",
        "route": "r", "requestId": "q", "correlationId": "c",
        "requestedModel": "m", "attempts": 1, "fallbacksUsed": 0,
        "modelsTried": [], "outcome": "success", "latencyUs": 1,
        "tuning": "default", "temperature": 0.5,
        "promptSha256": "0".repeat(64), "promptChars": 1
    }))
    .unwrap();
    let closed = sink.record(&entry).await.unwrap_err();
    assert!(
        matches!(closed, AuditError::Closed { sink: "webhook" }),
        "{closed}"
    );
    texts.push(closed.to_string());
    texts.push(format!("{closed:?}"));
    for text in &texts {
        assert!(!text.contains(key_b64), "secret leaked: {text}");
        assert!(!text.contains("MfKQ9r8G"), "secret leaked: {text}");
    }
    assert!(texts[1].contains("<redacted>"), "{}", texts[1]);
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = WebhookConfig {
        url: "https://audit.example.com/hook".into(),
        secret_env: "AUDIT_WEBHOOK_SECRET".into(),
        spool_dir: dir.path().join("spool"),
        batch_size: 10,
        queue_capacity: 10,
        request_timeout_ms: 10_000,
        max_spool_bytes: 1 << 30,
    };
    let err = WebhookSink::start(&config, WebhookSecret::parse(SPEC_SECRET).unwrap()).unwrap_err();
    assert!(
        matches!(err, AuditError::NoRuntime { sink: "webhook" }),
        "{err}"
    );
}
