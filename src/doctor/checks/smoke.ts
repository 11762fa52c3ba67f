// One token on the configured provider: loads the model (or, when none is pulled yet, the demo
// model) exactly as `vistyle ask` does and generates a single greedy token for a small picture.
// This is what finds a CUDA library that loads but fails on the first kernel, or a model file
// that is present but damaged.
import { readFile } from 'node:fs/promises';
import { explainConfiguredValues } from '../../config/provenance.js';
import { ensureDemoModel, ensureDemoPicture } from '../../demo/demo-model.js';
import { createLocalEngine } from '../../engine/local-engine.js';
import type { GenerateRequest } from '../../engine/types.js';
import { isVistyleError } from '../../errors.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

/** The one-token request: one picture, one question. */
function smokeRequest(image: Uint8Array): GenerateRequest {
  return {
    images: [image],
    messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in this picture?' }] }],
    lora: null,
    sampling: { maxNewTokens: 1, greedy: true },
  };
}

export async function checkSmokeRun(ctx: DoctorContext, modelDir: string | null): Promise<CheckResult> {
  const config = ctx.config!;
  const provider = config.model.provider;
  let dir = modelDir;
  let which = 'the model';
  try {
    if (!dir) {
      dir = (await ensureDemoModel()).dir;
      which = 'the demo model (no model pulled yet)';
    }
    const image = new Uint8Array(await readFile(await ensureDemoPicture()));
    const started = Date.now();
    const engine = await createLocalEngine({ modelDir: dir, provider, deviceId: config.model.deviceId, threads: config.model.threads });
    try {
      const generated = await engine.generate(smokeRequest(image)).result;
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      return result('smoke', 'ok', `one token from ${which} on ${provider} in ${seconds} s (load + ${generated.promptTokens}-token prompt)`);
    } finally {
      await engine.close();
    }
  } catch (error) {
    const text = isVistyleError(error) ? explainConfiguredValues(error, ctx.env).message : `unexpected error: ${(error as Error).message}`;
    const fix =
      isVistyleError(error, 'PROVIDER_UNAVAILABLE') ? 'fix the provider (the line says what is missing), or unset VISTYLE_PROVIDER to run on the CPU'
        : 'rebuild the model (`vistyle model pull` resumes and rebuilds); run with --verbose for details';
    return result('smoke', 'fail', `${which} on ${provider}: ${text}`, fix);
  }
}
