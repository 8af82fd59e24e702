/** The tags (field number and wire type) of the Span message's fields, for the readers and writers of its bytes. */
import { WireType } from './wire-reader';

const tag = (number: number, wireType: number) => (number << 3) | wireType;

export const TRACE_ID = tag(1, WireType.LENGTH);
export const SPAN_ID = tag(2, WireType.LENGTH);
export const TRACE_STATE = tag(3, WireType.LENGTH);
export const PARENT_SPAN_ID = tag(4, WireType.LENGTH);
export const NAME = tag(5, WireType.LENGTH);
export const KIND = tag(6, WireType.VARINT);
export const START = tag(7, WireType.FIXED64);
export const END = tag(8, WireType.FIXED64);
export const ATTRIBUTES = tag(9, WireType.LENGTH);
export const EVENTS = tag(11, WireType.LENGTH);
export const LINKS = tag(13, WireType.LENGTH);
export const STATUS = tag(15, WireType.LENGTH);
export const FLAGS = tag(16, WireType.FIXED32);

export const TRACE_ID_BYTES = 16;
export const SPAN_ID_BYTES = 8;
