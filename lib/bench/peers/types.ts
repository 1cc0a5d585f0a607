/** What `canopy bench` says about each peer: measured in this run, or absent and why. */
export interface PeerStatus {
  /** The peer's name as rows show it ("llama.cpp", "PyTorch"). */
  name: string;
  available: boolean;
  /** Version and how it ran when available; why not otherwise (with how to fix it). */
  detail: string;
}
