// The module web/plugins/lessons.ts builds from lessons/<page>.md (the types: src/lib/lessons.ts).
declare module 'virtual:lessons' {
  const lessons: Record<
    string,
    {
      page: string;
      title: string;
      suggest: string[];
      sections: {
        id: string;
        title: string;
        widget: string;
        keywords: string[];
        kind: 'intuition' | 'maths' | 'widget' | 'notice' | 'misunderstanding' | 'summary' | 'code' | 'exercise';
        body: string;
      }[];
    }
  >;
  export default lessons;
}
