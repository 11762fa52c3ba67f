// An album arrives as several messages sharing a media_group_id, usually within a second of each
// other, only one of them carrying the caption. The collector holds the parts of each album until
// no new part has arrived for `windowMs`, then hands them over together, oldest first.

export class AlbumCollector<T extends { message_id: number }> {
  private readonly albums = new Map<string, { parts: T[]; timer: NodeJS.Timeout }>();

  constructor(
    private readonly windowMs: number,
    private readonly onAlbum: (parts: T[]) => void,
  ) {}

  add(key: string, part: T): void {
    const album = this.albums.get(key);
    if (album) {
      clearTimeout(album.timer);
      album.parts.push(part);
      album.timer = this.schedule(key);
    } else {
      this.albums.set(key, { parts: [part], timer: this.schedule(key) });
    }
  }

  /** Albums still being collected. */
  get size(): number {
    return this.albums.size;
  }

  /** Hand over every album now (on shutdown), so that no part is dropped. */
  flushAll(): void {
    for (const key of [...this.albums.keys()]) this.flush(key);
  }

  private schedule(key: string): NodeJS.Timeout {
    return setTimeout(() => this.flush(key), this.windowMs);
  }

  private flush(key: string): void {
    const album = this.albums.get(key);
    if (!album) return;
    clearTimeout(album.timer);
    this.albums.delete(key);
    this.onAlbum([...album.parts].sort((a, b) => a.message_id - b.message_id));
  }
}
