import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { Request } from 'express';
import { invalidRequest } from '../common/api-error.js';

export interface ReceivedUpload {
  fields: Record<string, string>;
  file: { filename: string; bytes: number } | undefined;
}

/**
 * Reads a `multipart/form-data` upload (as OpenAI's clients send files): text fields, and the
 * part named `file` handed to `store` as a stream while it arrives, so no upload is ever held
 * whole in memory. A `store` failure (e.g. the size limit) ends the upload at once.
 */
export async function receiveMultipart(
  request: Request,
  store: (stream: Readable, filename: string) => Promise<number>,
): Promise<ReceivedUpload> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: request.headers,
      limits: { files: 1, fields: 20, fieldSize: 64 * 1024 },
    });
  } catch (error) {
    throw invalidRequest(
      `Expected a multipart/form-data body with a 'file' part (${error instanceof Error ? error.message : String(error)}).`,
      'file',
    );
  }
  return new Promise<ReceivedUpload>((resolve, reject) => {
    const fields: Record<string, string> = {};
    let upload: Promise<{ filename: string; bytes: number }> | undefined;
    let failed = false;
    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      request.unpipe(parser);
      request.resume();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'file' || upload !== undefined) {
        stream.resume();
        return;
      }
      const filename =
        info.filename === undefined || info.filename === '' ? 'upload' : info.filename;
      upload = store(stream, filename).then((bytes) => ({ filename, bytes }));
      upload.catch(fail);
    });
    parser.on('error', (error) => {
      fail(
        invalidRequest(
          `Malformed multipart body: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
    });
    parser.on('close', () => {
      if (upload === undefined) {
        resolve({ fields, file: undefined });
        return;
      }
      upload.then((file) => {
        resolve({ fields, file });
      }, fail);
    });
    request.pipe(parser);
  });
}
