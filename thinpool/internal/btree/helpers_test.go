package btree

const testSeed = 0x5eed5eed
