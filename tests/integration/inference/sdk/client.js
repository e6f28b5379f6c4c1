// An agent's model calls made with the official OpenAI SDK (npm `openai`), as a coding agent makes
// them: base URL https://inference.local/v1 and a made-up API key (the router strips it).
// The SDK uses fetch, which ignores HTTPS_PROXY; undici's ProxyAgent takes the proxy from the
// environment the supervisor gives the agent, and the sandbox CA from its trust bundle.
const fs = require('fs');
const { ProxyAgent, fetch } = require('undici');
const OpenAI = require('openai').default;

const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
const caFile = process.env.NODE_EXTRA_CA_CERTS || process.env.SSL_CERT_FILE;
const dispatcher = new ProxyAgent({ uri: proxy, requestTls: { ca: fs.readFileSync(caFile) } });
const client = new OpenAI({
  baseURL: 'https://inference.local/v1',
  apiKey: 'sk-agent-made-up-key',
  fetch: (url, init) => fetch(url, { ...init, dispatcher }),
  maxRetries: 0,
});

const [mode, model] = process.argv.slice(2);
const messages = [{ role: 'user', content: 'Say hello' }];
(async () => {
  if (mode === 'stream') {
    const stream = await client.chat.completions.create({ model, messages, stream: true });
    for await (const chunk of stream) {
      // One line per chunk with the time it arrived: the test checks they came apart.
      console.log(`chunk ${Date.now()} ${JSON.stringify(chunk.choices[0]?.delta?.content ?? '')}`);
    }
    console.log('done');
  } else if (mode === 'models') {
    for await (const m of client.models.list()) console.log(`model ${m.id}`);
  } else {
    const r = await client.chat.completions.create({ model, messages });
    console.log(`reply ${r.choices[0].message.content}`);
  }
})().catch((e) => {
  console.log(`error ${e.status ?? ''} ${e.message}`);
  process.exit(1);
});
