/**
 * Which lab the desktop app is on: this computer's console or a lab server's. The shell
 * (src-tauri `seat`) holds the console; this asks it (`seat`), joins one (`join`, a server
 * checked by a real request) and goes back to the first screen (`leave`). In a browser the
 * page is served by its console, so there is nothing to choose.
 */
import { invoke } from '@tauri-apps/api/core';
import { toError } from './errors';
import { isTauri } from './tauri';

export { checkServerUrl } from './labUrl';

export interface LabInfo {
  kind: 'local' | 'server';
  /** "this computer", or the server's host and port. */
  name: string;
  url: string | null;
  /** The user the server knows the token as, when it says. */
  user: string | null;
}

export interface SeatView {
  /** The lab joined now; null while the first screen shows. */
  lab: LabInfo | null;
  remembered_url: string | null;
  /** The file a server's token is kept in when no OS keyring answers. */
  token_file: string;
  /** Where the last remembered token went. */
  token_in: 'none' | 'keyring' | 'file' | null;
  /** Why the remembered lab could not be joined at start. */
  error: string | null;
}

export type Choice = { lab: 'local' } | { lab: 'server'; url: string };

class Seat {
  readonly desktop = isTauri();
  /** null until the shell answered. */
  view = $state<SeatView | null>(null);

  async load(): Promise<void> {
    if (!this.desktop) return;
    this.view = await invoke<SeatView>('seat');
  }

  /** Join a lab; rejects with the shell's error (wrong token, server down, ...). */
  async join(choice: Choice, token: string | null): Promise<void> {
    try {
      await invoke<LabInfo>('join', { choice, token });
    } catch (e) {
      throw toError(e);
    }
    await this.load();
  }

  async leave(): Promise<void> {
    await invoke('leave');
    await this.load();
  }
}

export const seat = new Seat();
void seat.load();
