/**
 * The one typed client of our REST API (same origin as the viewer: session cookie + CSRF).
 * Every failure becomes an ApiError carrying the status and the server's words, for the panels
 * to show: nothing is swallowed.
 */

import type { SectionTitle } from './reportText';

export interface Condition { key: string; name: string; category: string }
export interface KeySlice { series_uid: string; sop_uid: string; index: number; score?: number; frame?: number | null }
export interface Box { series_uid?: string; sop_uid: string; frame?: number | null; xyxy: number[]; xyxy_norm?: number[]; condition?: string; label?: string }
export interface Finding {
  id: number; condition: string; probability: number; present: boolean; level: string; side: string;
  key_slices: KeySlice[]; boxes: Box[];
}
export interface Draft { id: number; text: string; sections: Record<string, string>; findings: Finding[]; model_version: string | null }
export interface Revision { id: number; number: number; parent: number | null; text: string; sections: Record<string, string>; is_conflict: boolean; author: string; created_at: string }
export interface Review { id: number; radpeer: string; comment: string; in_scope: boolean; signed_at: string | null; signed_revision: number | null; edit_distance: Record<string, number> }
export interface StructuredReport { id: number; source: string; parent: number | null; sop_instance_uid: string; series_instance_uid: string; boxes: Box[] }
export interface SimilarCase { study_uid: string; score: number; report: string }
export interface Series { series_uid: string; description: string; sequence_class: string; sequence_subtype: string; plane: string; instance_count?: number; series_number?: number | null }
/** A finding sentence of the draft and the agent call it states (ml/agents/report/provenance.py). */
export interface SentenceLink { section: string; sentence: string; condition: string; level: string; side: string; probability: number; present: boolean; stated: number }
export interface CheckChange { action: string; section: string; sentence: string; condition: string; reason: string; replacement?: string }
export interface DraftProvenance {
  links: SentenceLink[];
  current: { section: string; sentence: string; origin: 'ai' | 'typed'; conditions: string[] }[];
  check_summary: Record<string, number>;
  changes: CheckChange[];
  residual: Record<string, unknown>[];
}
export interface PriorReport { text: string; signed_at: string; reader: string | null; is_addendum: boolean; addendum_reason: string }
export interface Prior { id: number; study_uid: string; study_date: string | null; description: string; modalities: string; status: string; report: PriorReport | null }
export interface StudyContext {
  study: { id: number; study_uid: string; status: string; status_reason: string; description: string; series: Series[] };
  draft: Draft | null;
  similar_cases: SimilarCase[];
  job: { state: string; reason: string } | null;
  head_revision: Revision | null;
  review: Review | null;
  structured_report: StructuredReport | null;
  conditions: Condition[];
  job_pending: boolean;
  /** the report's section titles and their aliases: reportText.splitSections cuts with them as the server does */
  report_sections: SectionTitle[];
  /** which agent call each draft sentence states, and what the consistency check changed */
  draft_provenance: DraftProvenance | null;
  /** the same patient's earlier studies, newest first, with the newest signed report the reader may see */
  priors: Prior[];
}
export type Verdict = 'agree' | 'disagree' | 'correct';
export interface FindingFeedback { id: number; finding: number; condition: string; verdict: Verdict; level: string; side: string; comment: string; created_at: string }
export interface Heartbeat { counted: boolean; active_seconds: number; accepted: number; corrected: number; rejected: number }
export interface Conflict { detail: string; saved: Revision; head: Revision | null }

export class ApiError extends Error {
  constructor(public status: number, public detail: string, public body: any) {
    super(`${status}: ${detail}`);
  }
}

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

function describe(body: any, fallback: string): string {
  if (!body || typeof body !== 'object') return fallback;
  if (typeof body.detail === 'string') return body.detail;
  return Object.entries(body)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join('; ');
}

async function request<T>(method: string, url: string, data?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: {
        Accept: 'application/json',
        ...(data !== undefined ? { 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken() } : {}),
      },
      body: data !== undefined ? JSON.stringify(data) : undefined,
    });
  } catch (error) {
    throw new ApiError(0, `network error: ${(error as Error).message}`, null);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!response.ok) {
    throw new ApiError(response.status, describe(body, response.statusText || 'request failed'), body);
  }
  return body as T;
}

export const api = {
  studyContext: (studyUid: string) =>
    request<StudyContext>('GET', `/api/viewer/studies/${encodeURIComponent(studyUid)}/`),
  saveRevision: (studyId: number, body: { text: string; sections: Record<string, string>; parent: number | null }) =>
    request<Revision>('POST', `/api/studies/${studyId}/revisions/`, body),
  sign: (studyId: number, body: { radpeer: string; comment: string; in_scope: boolean; revision: number | null }) =>
    request<Review>('POST', `/api/studies/${studyId}/sign/`, body),
  saveBoxes: (studyId: number, body: { parent: number | null; boxes: Box[] }) =>
    request<StructuredReport>('POST', `/api/studies/${studyId}/boxes/`, body),
  feedback: (studyId: number) => request<FindingFeedback[]>('GET', `/api/studies/${studyId}/finding-feedback/`),
  giveFeedback: (studyId: number, body: { finding: number; verdict: Verdict; level?: string; side?: string }) =>
    request<FindingFeedback>('POST', `/api/studies/${studyId}/finding-feedback/`, body),
  heartbeat: (studyId: number) => request<Heartbeat>('POST', `/api/studies/${studyId}/reading-heartbeat/`, {}),
  nextStudy: (afterId: number) =>
    request<{ id: number; study_uid: string }>('GET', `/api/viewer/next-study/?after=${afterId}`),
};
