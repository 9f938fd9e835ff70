//! What the door keeps of a request read, to answer it: how (a stream or not), the
//! names of its parameters for errors, and what a Responses answer repeats.

use gateway_model::Metadata;

/// How to answer a request read, and how to name its parameters in errors.
#[derive(Debug)]
pub(crate) struct ChatCall {
    /// Answer as Server-Sent Events.
    pub(crate) stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub(crate) include_usage: bool,
    /// The parameter that set the token limit, to name in errors.
    pub(crate) max_tokens_param: &'static str,
    /// The parameter the prompt was rendered from (`messages`, or `input`), to name in
    /// errors.
    pub(crate) prompt_param: &'static str,
    /// Where the sticky key came from, to name in errors.
    pub(crate) sticky_key_param: &'static str,
    /// What a Responses answer repeats of the request (nothing for Chat Completions).
    pub(crate) echo: ResponseEcho,
}

/// What a `response` object repeats of its request, as OpenAI's does.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseEcho {
    /// The request's `instructions`.
    pub(crate) instructions: Option<String>,
    /// The request's `metadata`.
    pub(crate) metadata: Option<Metadata>,
    /// The request's `temperature`.
    pub(crate) temperature: Option<f64>,
    /// The request's `top_p`.
    pub(crate) top_p: Option<f64>,
}
