/**
 * The study under review, shared by the findings and report panels: loaded once, polled while
 * the draft is pending (the panel refreshes when it arrives), refreshed after every write.
 */
import { useEffect, useState } from 'react';
import { api, ApiError, type FindingFeedback, type Heartbeat, type StudyContext } from './api';

export interface StudyState {
  studyUid: string | null;
  context: StudyContext | null;
  error: ApiError | null;
  loading: boolean;
  selected: string | null; // condition key of the selected finding
  boxesVisible: boolean;
  boxStatus: string;
  boxError: Error | null;
  feedback: Record<number, FindingFeedback>; // the reader's newest verdict per finding id
  feedbackError: ApiError | null;
  radpeer: string; // the score picked for sign-off (hotkeys 1-5 or the radio buttons)
  hiddenConditions: string[]; // conditions whose boxes the reader switched off
  reading: Heartbeat | null; // active reading time and outcome counts, from the last heartbeat
  newBoxCondition: string; // condition of the boxes the reader draws ('' = the selected finding)
}

type Listener = (state: StudyState) => void;

const FRESH = { selected: null, boxesVisible: true, boxStatus: '', boxError: null, feedback: {}, feedbackError: null, radpeer: '', hiddenConditions: [], reading: null, newBoxCondition: '' };
let state: StudyState = { studyUid: null, context: null, error: null, loading: false, ...FRESH };
const listeners = new Set<Listener>();
let timer: ReturnType<typeof setTimeout> | null = null;
let pollSeconds = 5;

function emit(patch: Partial<StudyState>): void {
  state = { ...state, ...patch };
  listeners.forEach(l => l(state));
}

export function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function getState(): StudyState {
  return state;
}

export function update(patch: Partial<StudyState>): void {
  emit(patch);
}

export function studyUidFromUrl(): string | null {
  const params = new URLSearchParams(window.location.search);
  const value = params.get('StudyInstanceUIDs') ?? params.get('studyInstanceUIDs');
  return value ? value.split(',')[0] : null;
}

function needsPolling(context: StudyContext | null): boolean {
  return !context || !context.draft || context.job_pending;
}

export async function refresh(): Promise<void> {
  const studyUid = state.studyUid;
  if (!studyUid) return;
  emit({ loading: true });
  try {
    const context = await api.studyContext(studyUid);
    if (studyUid !== state.studyUid) return; // the user moved on meanwhile
    const first = !state.context;
    emit({ context, error: null, loading: false });
    if (first) void loadFeedback();
  } catch (error) {
    emit({ error: error instanceof ApiError ? error : new ApiError(0, String(error), null), loading: false });
  }
  schedule();
}

function schedule(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  if (state.studyUid && (needsPolling(state.context) || state.error)) {
    timer = setTimeout(refresh, pollSeconds * 1000);
  }
}

export function start(studyUid: string | null, seconds: number): void {
  pollSeconds = seconds;
  if (studyUid === state.studyUid && state.context) return;
  emit({ studyUid, context: null, error: null, ...FRESH });
  void refresh();
}

export function stop(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  emit({ studyUid: null, context: null, error: null, selected: null });
}

/** The reader's own verdicts (the API returns only theirs), newest per finding. */
export async function loadFeedback(): Promise<void> {
  const id = state.context?.study.id;
  if (id === undefined) return;
  try {
    const rows = await api.feedback(id);
    const latest: Record<number, FindingFeedback> = {};
    for (const row of rows) latest[row.finding] = row; // oldest first: the last one wins
    emit({ feedback: latest, feedbackError: null });
  } catch (error) {
    emit({ feedbackError: error as ApiError });
  }
}

export function useStudyState(): StudyState {
  const [current, setCurrent] = useState<StudyState>(state);
  useEffect(() => {
    listeners.add(setCurrent);
    setCurrent(state);
    return () => {
      listeners.delete(setCurrent);
    };
  }, []);
  return current;
}
