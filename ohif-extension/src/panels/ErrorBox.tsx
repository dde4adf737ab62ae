import React from 'react';
import type { ApiError } from '../api';

/** An API error as the user should see it: status and the server's words, never hidden. */
export function ErrorBox({ error, prefix }: { error: ApiError | Error | null; prefix?: string }) {
  if (!error) return null;
  const status = (error as ApiError).status;
  const detail = (error as ApiError).detail ?? error.message;
  return (
    <div className="sr-error" role="alert" data-testid="sr-error">
      {prefix ? `${prefix}: ` : ''}
      {status ? `HTTP ${status} — ` : ''}
      {detail}
    </div>
  );
}
