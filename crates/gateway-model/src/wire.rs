//! The payload on the wire: the compiled payload schema and the one checked encoder
//! every sender uses.

use std::sync::LazyLock;

use crate::payload::{GatewayPayload, MAX_REQUEST_BYTES};
use crate::schema::FormatCheck;
use crate::validation::{Rule, Validate, ValidationErrors};

static PAYLOAD_FORMAT: LazyLock<FormatCheck> =
    LazyLock::new(FormatCheck::for_type::<GatewayPayload>);

/// The compiled [`GatewayPayload`] schema, built on first use and shared.
///
/// ```
/// use gateway_model::{payload_format, GatewayPayload};
///
/// let payload = GatewayPayload::builder("model-gen-4", "Hello").build()?;
/// let json = serde_json::to_value(&payload).unwrap();
/// assert!(payload_format().check(&json).is_ok());
///
/// let mut bad = json.clone();
/// bad["parameters"]["temperature"] = 9.0.into();
/// let err = payload_format().check(&bad).unwrap_err();
/// assert_eq!(err.violations()[0].path, "/parameters/temperature");
/// # Ok::<(), gateway_model::ValidationErrors>(())
/// ```
pub fn payload_format() -> &'static FormatCheck {
    &PAYLOAD_FORMAT
}

impl GatewayPayload {
    /// The payload as the JSON bytes sent on the wire: refused unless it meets the payload
    /// schema ([`payload_format`](payload_format)) and [`Validate`], and fits in
    /// [`MAX_REQUEST_BYTES`]. The one encoder every sender uses.
    ///
    /// A payload of typed fields only is checked by [`Validate`] and written straight to
    /// bytes: the property test `crates/gateway-model/tests/agreement.rs` proves, on
    /// generated payloads, that `validate()` rejects exactly what the schema rejects and
    /// that these bytes pass the schema, and fails when either side drifts. Untyped
    /// [`Parameters::extra`](crate::Parameters::extra) entries are the schema's alone to judge (they could, say,
    /// repeat a typed name), so such a payload also goes through the compiled schema.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, ValidationErrors> {
        let malformed = |e: serde_json::Error| ValidationErrors::single("", Rule::malformed(e));
        self.validate()?;
        let bytes = if self.parameters.extra.is_empty() {
            // Sized for the prompt and the rest of a typical payload, so it grows rarely.
            let mut bytes = Vec::with_capacity(self.prompt.len() + 512);
            serde_json::to_writer(&mut bytes, self).map_err(malformed)?;
            bytes
        } else {
            let value = serde_json::to_value(self).map_err(malformed)?;
            payload_format().check(&value)?;
            serde_json::to_vec(&value).map_err(malformed)?
        };
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(ValidationErrors::single(
                "",
                Rule::Conflict {
                    reason: "the serialised payload exceeds Genesys Cloud's 512,000-byte request limit",
                },
            ));
        }
        Ok(bytes)
    }
}
