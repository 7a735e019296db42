/**
 * Prompts tasks put to the operator, as the Live screen shows them: the list the console
 * gives (`list_prompts`), kept current by `prompt` and `prompt_answered` run events.
 */
import type { PromptView, RunEvent } from '../api/types';

export class LivePrompts {
  private byId = new Map<number, PromptView>();
  /** Ids asked and answered by events since the oldest list request still on its way. */
  private askedSince = new Set<number>();
  private answeredSince = new Set<number>();
  private pending = 0;

  /** A list request leaves: events from now on are newer than its answer. */
  begin() {
    if (this.pending++ === 0) {
      this.askedSince.clear();
      this.answeredSince.clear();
    }
  }

  /**
   * Replaces what is known with the console's list (the answer to the request `begin`
   * announced), keeping what events said after that request left.
   */
  load(list: PromptView[]) {
    const next = new Map(list.map((p) => [p.id, p]));
    for (const id of this.askedSince) {
      const p = this.byId.get(id);
      if (p) next.set(id, p);
    }
    for (const id of this.answeredSince) next.delete(id);
    this.byId = next;
    this.settle();
  }

  /** A list request failed. */
  settle() {
    if (this.pending > 0) this.pending--;
  }

  /** Applies one run event; true when the waiting prompts changed. */
  apply(ev: RunEvent): boolean {
    if (ev.type === 'prompt') {
      this.byId.set(ev.prompt.id, ev.prompt);
      if (this.pending) this.askedSince.add(ev.prompt.id);
      return true;
    }
    if (ev.type === 'prompt_answered') {
      if (this.pending) this.answeredSince.add(ev.id);
      return this.byId.delete(ev.id);
    }
    return false;
  }

  /** The prompt was answered here. */
  answered(id: number) {
    this.byId.delete(id);
  }

  /** Waiting prompts, oldest first. */
  list(): PromptView[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }

  /** Whether an answer is acceptable before sending it: a choice, or text the pattern takes. */
  static check(p: PromptView, answer: string): string | null {
    if (p.choices.length) return p.choices.includes(answer) ? null : `choose one of: ${p.choices.join(', ')}`;
    if (p.pattern != null) {
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${p.pattern})$`);
      } catch {
        return null; // the console checks it
      }
      return re.test(answer) ? null : `the answer must match ${p.pattern}`;
    }
    return null;
  }
}
