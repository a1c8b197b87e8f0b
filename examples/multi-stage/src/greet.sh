#!/bin/sh
echo "${GREETING:-hello} from chasi"
