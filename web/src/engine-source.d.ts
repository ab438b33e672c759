declare module 'virtual:engine-source' {
  const excerpts: { name: string; file: string; firstLine: number; lastLine: number; code: string }[];
  export default excerpts;
}
