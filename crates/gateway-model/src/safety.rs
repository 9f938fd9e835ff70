//! Safety filters a payload asks for, and the safety verdict a response carries.

use schemars::JsonSchema;

use crate::open_enum::open_enum;

open_enum! {
    /// A content-moderation filter the gateway runs before the model sees the prompt.
    ///
    /// Only the names in [`SafetyFilter::KNOWN`] are valid; any other name reads as
    /// [`SafetyFilter::Other`] and fails validation with the known names listed.
    pub enum SafetyFilter (Closed) {
        /// Personally identifiable information (names, card numbers, addresses).
        Pii = "pii",
        /// Profane language.
        Profanity = "profanity",
        /// Toxic or abusive language.
        Toxicity = "toxicity",
        /// Hate speech.
        Hate = "hate",
        /// Violent content.
        Violence = "violence",
        /// Sexual content.
        Sexual = "sexual",
        /// Self-harm content.
        SelfHarm = "self-harm",
        /// Attempts to override the system instructions.
        PromptInjection = "prompt-injection",
    }
}

open_enum! {
    /// What the gateway's safety pipeline concluded about a call.
    pub enum SafetyVerdict (Open) {
        /// Nothing was flagged.
        Passed = "passed",
        /// Something was flagged but the answer was still produced.
        Flagged = "flagged",
        /// The prompt or the answer was blocked.
        Blocked = "blocked",
    }
}

/// The safety section of a gateway response.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyReport {
    /// The overall verdict.
    pub verdict: SafetyVerdict,
    /// The filters that fired, if any (names as the gateway sent them, known or not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered: Vec<String>,
    /// Fields this version does not know, kept as received (at most
    /// [`MAX_UNKNOWN_VALUES`](crate::MAX_UNKNOWN_VALUES) JSON values).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

crate::unknown_fields::keep_unknown_fields!(SafetyReport {
    verdict: "verdict" required,
    triggered: "triggered" strings,
});

impl crate::Validate for SafetyFilter {
    fn collect_violations(&self, at: &crate::Location<'_>, out: &mut crate::Violations) {
        if let SafetyFilter::Other(name) = self {
            out.push(
                at,
                crate::Rule::unknown("safety filter", name, Self::KNOWN.to_vec()),
            );
        }
    }
}

/// Checks a list of safety filters: each known, and none repeated.
pub(crate) fn check_safety_filters(
    at: &crate::Location<'_>,
    filters: &[SafetyFilter],
    out: &mut crate::Violations,
) {
    for (i, filter) in filters.iter().enumerate() {
        let here = at.index(i);
        crate::Validate::collect_violations(filter, &here, out);
        crate::validation::check_unique(&here, filter, filters[..i].iter(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_kept() {
        let f: SafetyFilter = serde_json::from_str("\"brand-safety\"").unwrap();
        assert_eq!(f, SafetyFilter::Other("brand-safety".into()));
        assert!(!f.is_known());
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"brand-safety\"");
        let known: SafetyFilter = serde_json::from_str("\"self-harm\"").unwrap();
        assert_eq!(known, SafetyFilter::SelfHarm);
    }
}
