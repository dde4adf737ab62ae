/**
 * The study under review, shared by the findings and report panels: loaded once, polled while
 * the draft is pending (the panel refreshes when it arrives), refreshed after every write.
 */
import { useEffect, useState } from 'react';
import { api, ApiError, type StudyContext } from './api';

export interface StudyState {
  studyUid: string | null;
  context: StudyContext | null;
  error: ApiError | null;
  loading: boolean;
  selected: string | null; // condition key of the selected finding
  boxesVisible: boolean;
  boxStatus: string;
  boxError: Error | null;
}

type Listener = (state: StudyState) => void;

let state: StudyState = { studyUid: null, context: null, error: null, loading: false, selected: null, boxesVisible: true, boxStatus: '', boxError: null };
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
    emit({ context, error: null, loading: false });
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
  emit({ studyUid, context: null, error: null, selected: null, boxesVisible: true, boxStatus: '', boxError: null });
  void refresh();
}

export function stop(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  emit({ studyUid: null, context: null, error: null, selected: null });
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
