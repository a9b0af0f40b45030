/**
 * image-layout.md#indexjson-file / annotations.md: the index.json annotation that names a
 * manifest; in tsbuild's store it holds the full reference a tag stands for.
 */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
