import { existsSync } from 'node:fs';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildModelGraph,
  checkBundleInputs,
  createPresetBundle,
  decodeModel,
  elementCount,
  encodeModel,
  encodeModelPieces,
  initWeights,
  parameterCount,
  presetConfig,
  writeBundle,
  writeOnnxModel,
} from '#model';
import type { BuildStage, GraphBuilder, ModelMessage } from '#model';

interface Report {
  done: number;
  total: number;
  stage: BuildStage;
}

function recorder(): {
  reports: Report[];
  onProgress: (d: number, t: number, s: BuildStage) => void;
} {
  const reports: Report[] = [];
  return { reports, onProgress: (done, total, stage) => reports.push({ done, total, stage }) };
}

/** Checks one stage's reports: from 0, never backwards, to the one total every report names. */
function expectRun(reports: readonly Report[], stage: BuildStage, total: number): void {
  expect(reports.length).toBeGreaterThan(1);
  expect(reports.every((report) => report.stage === stage && report.total === total)).toBe(true);
  const done = reports.map((report) => report.done);
  expect(done[0]).toBe(0);
  expect(done).toEqual([...done].sort((a, b) => a - b));
  expect(done.at(-1)).toBe(total);
}

/** Values of the large matrices (embedding, fused Gemms, LM head) among a float graph's initializers. */
function storedValues(g: GraphBuilder): number {
  return g.initializers
    .filter((init) => /(embed_in|embed_out|fused_input|fused_output)\.weight$/.test(init.name))
    .reduce((sum, init) => sum + elementCount(init.dims), 0);
}

describe('build progress', () => {
  it('initWeights reports every parameter it sets and draws the same weights', () => {
    const config = presetConfig('tiny', 'dijiang');
    const { reports, onProgress } = recorder();
    const weights = initWeights(config, 4, onProgress);
    let values = 0;
    for (const tensor of weights.values()) values += tensor.data.length;
    expect(values).toBe(parameterCount(config));
    expectRun(reports, 'weights', values);
    // Each tensor reports once its values are set (these are all under one step).
    expect(reports.length).toBe(1 + weights.size);
    const plain = initWeights(config, 4);
    for (const [name, tensor] of weights) {
      expect(
        Buffer.from(tensor.data.buffer).equals(
          Buffer.from(plain.get(name)?.data.buffer ?? new ArrayBuffer(0)),
        ),
        name,
      ).toBe(true);
    }
  });

  it.each([
    ['fp32', 'graph'],
    ['fp16', 'graph'],
    ['int4', 'quantize'],
  ] as const)(
    'buildModelGraph with %s weights reports the stored matrices as %s',
    (precision, stage) => {
      const config = presetConfig('tiny', 'dijiang');
      const weights = initWeights(config, 1);
      const { reports, onProgress } = recorder();
      buildModelGraph(config, weights, 'fp32', precision, onProgress);
      // The float32 graph's own initializers say how many values the large matrices hold.
      expectRun(reports, stage, storedValues(buildModelGraph(config, weights)));
      // One report per matrix at least: embedding, two per layer, LM head.
      expect(reports.length).toBeGreaterThanOrEqual(2 + 2 * config.numLayers + 1);
    },
  );

  it('the pieces of a model decode to the message encodeModel writes', () => {
    const config = presetConfig('tiny', 'softmax');
    const g = buildModelGraph(config, initWeights(config, 2));
    const message: ModelMessage = {
      irVersion: 9,
      producerName: 'test',
      producerVersion: '1',
      docString: 'pieces',
      opsetImport: [{ domain: '', version: 20 }],
      metadataProps: [{ key: 'k', value: 'v' }],
      graph: {
        name: 'g',
        node: g.nodes,
        initializer: g.initializers.map((init) => ({
          name: init.name,
          dims: [...init.dims],
          dataType: init.dataType,
          rawData: init.bytes,
        })),
        input: g.inputs,
        output: g.outputs,
      },
    };
    const pieces = encodeModelPieces(message);
    // The weights are written from their own buffers, not copied.
    for (const init of message.graph.initializer) expect(pieces).toContain(init.rawData);
    // Decoded and encoded again, both give the same bytes: the same message, field by field.
    const canonical = (bytes: Uint8Array): Buffer => Buffer.from(encodeModel(decodeModel(bytes)));
    expect(canonical(Buffer.concat(pieces)).equals(canonical(encodeModel(message)))).toBe(true);
  });

  it.each(['never', 'always'] as const)(
    'writeOnnxModel (external data: %s) reports the graph, then every byte it writes',
    async (externalData) => {
      const config = presetConfig('tiny', 'dijiang');
      const dir = await mkdtemp(join(tmpdir(), 'dijiang-progress-'));
      const { reports, onProgress } = recorder();
      const written = await writeOnnxModel(config, initWeights(config, 1), join(dir, 'm.onnx'), {
        externalData,
        onProgress,
      });
      const graph = reports.filter((report) => report.stage === 'graph');
      const write = reports.filter((report) => report.stage === 'write');
      expect(reports).toEqual([...graph, ...write]);
      // The graph file, and the tensors it places in the external-data file (between them, the
      // alignment gaps are never written).
      const externalBytes = decodeModel(await readFile(written.modelPath))
        .graph.initializer.flatMap((tensor) => tensor.externalData ?? [])
        .filter((entry) => entry.key === 'length')
        .reduce((sum, entry) => sum + Number(entry.value), 0);
      expect(externalBytes > 0).toBe(externalData === 'always');
      expectRun(write, 'write', (await stat(written.modelPath)).size + externalBytes);
    },
  );
});

describe('bundle inputs are checked before any weight is drawn', () => {
  it('a preset with a Hugging Face tokenizer and none given fails, and writes nothing', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'dijiang-fail-')), 'bundle');
    // pythia-2.8b's weights would take 11 GiB and minutes: the error comes before them.
    await expect(createPresetBundle(out, 'pythia-2.8b')).rejects.toThrow(
      'model pythia-2.8b-dijiang uses a Hugging Face tokenizer: give the tokenizer.json to bundle',
    );
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a bundle folder that is a file, a missing tokenizer file and a bad id', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-fail-'));
    const file = join(dir, 'file');
    await writeFile(file, 'not a folder');
    const tiny = presetConfig('tiny', 'dijiang');
    const pythia = presetConfig('pythia-70m', 'dijiang');
    await expect(checkBundleInputs(file, tiny, { id: 'tiny' })).rejects.toThrow(
      `bundle folder ${file} exists and is not a folder`,
    );
    await expect(checkBundleInputs(join(file, 'inner'), tiny, { id: 'tiny' })).rejects.toThrow(
      `bundle folder ${join(file, 'inner')} cannot be created: ${file} is not a folder`,
    );
    const absent = join(dir, 'tokenizer.json');
    await expect(
      checkBundleInputs(join(dir, 'out'), pythia, { id: 'p', tokenizerJsonPath: absent }),
    ).rejects.toThrow(`model p: tokenizer file ${absent} is missing or not a file`);
    await expect(checkBundleInputs(join(dir, 'out'), tiny, { id: '-x' })).rejects.toThrow(
      'model id "-x" must be',
    );
    await expect(writeBundle(file, tiny, initWeights(tiny, 0), { id: 'tiny' })).rejects.toThrow(
      'exists and is not a folder',
    );
    await expect(checkBundleInputs(join(dir, 'a', 'b'), tiny, { id: 'tiny' })).resolves.toBe(
      undefined,
    );
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });
});
