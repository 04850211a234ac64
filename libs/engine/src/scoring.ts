/** Summary of a scored text: per-token log-probs turned into NLL and perplexity figures. */
export interface ScoreSummary {
  tokens: number;
  totalNll: number;
  /** exp(mean NLL); 1 for an empty text. */
  perplexity: number;
  /** Perplexity of consecutive windows of `windowTokens` tokens (the last may be shorter). */
  windows: { start: number; end: number; nll: number; perplexity: number }[];
}

export function summarizeScore(
  logprobs: readonly number[] | Float64Array,
  windowTokens: number | undefined,
): ScoreSummary {
  let totalNll = 0;
  for (const logprob of logprobs) totalNll -= logprob;
  const windows: ScoreSummary['windows'] = [];
  if (windowTokens !== undefined && windowTokens > 0) {
    for (let start = 0; start < logprobs.length; start += windowTokens) {
      const end = Math.min(logprobs.length, start + windowTokens);
      let nll = 0;
      for (let index = start; index < end; index += 1) nll -= logprobs[index] ?? 0;
      windows.push({ start, end, nll, perplexity: Math.exp(nll / (end - start)) });
    }
  }
  const tokens = logprobs.length;
  return { tokens, totalNll, perplexity: tokens === 0 ? 1 : Math.exp(totalNll / tokens), windows };
}
