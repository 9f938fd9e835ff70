// The sidecar's OpenAI door, driven by the Vercel AI SDK (`ai`, `@ai-sdk/openai`,
// `@ai-sdk/openai-compatible`). Run by `cargo xtask openai-sdk` with ROUTER_URL (the
// sidecar's /v1 base), ROUTER_KEY and ROUTER_ROUTES set; the first failed assertion ends
// the run with a non-zero exit.

import assert from 'node:assert/strict';
import { generateText, streamText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';

const baseURL = process.env.ROUTER_URL;
const apiKey = process.env.ROUTER_KEY;
const route = process.env.ROUTER_ROUTES.split(',').sort()[0];
const openai = createOpenAI({ baseURL, apiKey });
const compatible = createOpenAICompatible({ name: 'router', baseURL, apiKey, includeUsage: true });

async function check(name, run) {
  await run();
  console.log(`ok   ${name}`);
}

for (const [provider, model] of [
  ['@ai-sdk/openai (Responses API)', openai(route)],
  ['@ai-sdk/openai .chat()', openai.chat(route)],
  ['@ai-sdk/openai-compatible', compatible.chatModel(route)],
]) {
  await check(`${provider}: generateText`, async () => {
    const answer = await generateText({ model, prompt: 'Summarize this transcript', maxRetries: 0 });
    assert.ok(answer.text.length > 0, 'text');
    assert.equal(answer.finishReason, 'stop');
    assert.ok(answer.response.modelId, 'the served model');
    assert.equal(answer.usage.totalTokens, answer.usage.inputTokens + answer.usage.outputTokens);
  });
  await check(`${provider}: streamText`, async () => {
    let error;
    const stream = streamText({ model, prompt: 'hi', maxRetries: 0, onError: (e) => { error = e.error; } });
    let text = '';
    for await (const delta of stream.textStream) text += delta;
    assert.equal(error, undefined);
    assert.ok(text.length > 0, 'streamed text');
    assert.equal(await stream.finishReason, 'stop');
    assert.ok((await stream.usage).totalTokens > 0, 'usage at the end of the stream');
  });
}

await check('an unknown route is a 404 naming the model', async () => {
  await assert.rejects(
    generateText({ model: openai.chat('no-such-route'), prompt: 'x', maxRetries: 0 }),
    (e) => e.statusCode === 404 && /no-such-route/.test(e.message),
  );
});

await check('a conversation with a system prompt, through the Responses API', async () => {
  const answer = await generateText({
    model: openai(route),
    system: 'Be brief.',
    messages: [
      { role: 'user', content: 'Where is my parcel?' },
      { role: 'assistant', content: 'Which order?' },
      { role: 'user', content: '#42' },
    ],
    maxRetries: 0,
  });
  assert.ok(answer.text.length > 0, 'text');
  assert.deepEqual(answer.warnings, []);
});

console.log('Vercel AI SDK checks passed');
