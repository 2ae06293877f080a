// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {LudexVault} from "./LudexVault.sol";

/// @title Settlement of finished poker hands, signed EIP-712 by an operator.
/// @notice Anyone may submit a batch; what counts is the operator's signature over it.
/// Each table's hands form a chain: hand n+1 names hand n's record (its EIP-712 struct
/// hash) and the contract keeps each table's last hand number and record, so a hand is
/// settled once, in order, and a replayed, reordered or forged history is refused.
/// A hand moves table funds (`locked`) between its players and its rake to the
/// treasury; its deltas and rake sum to zero. Calldata is compact (runs of hands per
/// table, players by roster index, 16 bytes per seat); the signature still covers the
/// full typed `Hand` of each hand, which the contract rebuilds and hashes.
abstract contract LudexSettlement is LudexVault {
    /// @notice Consecutive hands of one table, as sent (compact calldata). The signed
    /// data is the full EIP-712 `Hand` of each hand, which the contract rebuilds: hand
    /// numbers count up from `firstHand`, each hand's previous record is the one before.
    struct TableRun {
        uint64 tableId;
        uint64 firstHand;
        bytes32 previousRecord;
        address token;
        address[] roster;
        CompactHand[] hands;
    }

    /// @notice One hand: its shuffle commitment, its rake, and 16 bytes per seat:
    /// the player's index in the run's roster (1 byte), 1 if the player lost (1 byte),
    /// the amount won or lost (14 bytes, big-endian).
    struct CompactHand {
        bytes32 commitment;
        uint256 rake;
        bytes seats;
    }

    struct TableHead {
        bytes32 record;
        uint64 lastHand;
    }

    bytes32 public constant HAND_TYPEHASH = keccak256(
        "Hand(uint64 tableId,uint64 handNumber,address token,bytes32 commitment,"
        "bytes32 previousRecord,uint256 rake,address[] players,int256[] deltas)"
    );
    bytes32 public constant SETTLEMENT_TYPEHASH = keccak256(
        "Settlement(uint64 batchId,Hand[] hands)"
        "Hand(uint64 tableId,uint64 handNumber,address token,bytes32 commitment,"
        "bytes32 previousRecord,uint256 rake,address[] players,int256[] deltas)"
    );
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("Ludex");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    uint256 private constant _HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant _SEAT_BYTES = 16;
    uint256 private constant _AMOUNT_MASK = (1 << 112) - 1;

    mapping(uint64 tableId => TableHead) public tables;

    event HandSettled(uint64 indexed tableId, uint64 handNumber, bytes32 record, uint256 rake);
    event RakeCollected(address indexed token, uint64 indexed batchId, uint256 amount);
    event BatchSettled(uint64 indexed batchId, address indexed signer, uint256 hands);

    error EmptyBatch();
    error BadSignature();
    error SignerNotOperator(address signer);
    error BadSeats(uint64 tableId, uint64 handNumber);
    error NotZeroSum(uint64 tableId, uint64 handNumber);
    error RakeTooLarge(uint64 tableId, uint64 handNumber);
    error HandOutOfOrder(uint64 tableId, uint64 expected, uint64 got);
    error WrongPreviousRecord(uint64 tableId, uint64 handNumber);

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice Settle runs of hands signed by an operator: a 65-byte (r, s, v) signature
    /// over the EIP-712 digest of `Settlement(batchId, hands)`, the hands in run order.
    function settle(uint64 batchId, TableRun[] calldata runs, bytes calldata signature) external whenNotPaused {
        uint256 total;
        for (uint256 i; i < runs.length; ++i) {
            total += runs[i].hands.length;
        }
        if (total == 0) revert EmptyBatch();
        bytes32[] memory records = new bytes32[](total);
        uint256 at;
        for (uint256 i; i < runs.length; ++i) {
            TableRun calldata run = runs[i];
            uint256 rake;
            (at, rake) = _settleRun(run, records, at);
            if (rake != 0) emit RakeCollected(run.token, batchId, rake);
        }
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                domainSeparator(),
                keccak256(abi.encode(SETTLEMENT_TYPEHASH, batchId, keccak256(abi.encodePacked(records))))
            )
        );
        address signer = _recover(digest, signature);
        if (!isOperator[signer]) revert SignerNotOperator(signer);
        emit BatchSettled(batchId, signer, total);
    }

    function _settleRun(TableRun calldata run, bytes32[] memory records, uint256 at)
        private
        returns (uint256, uint256 rakeTotal)
    {
        uint64 tableId = run.tableId;
        TableHead storage head = tables[tableId];
        uint64 number = head.lastHand + 1;
        if (run.firstHand != number) revert HandOutOfOrder(tableId, number, run.firstHand);
        bytes32 previous = head.record;
        if (run.previousRecord != previous) revert WrongPreviousRecord(tableId, number);
        uint256 count = run.hands.length;
        for (uint256 h; h < count; ++h) {
            CompactHand calldata hand = run.hands[h];
            previous = _settleHand(run, hand, number, previous);
            records[at++] = previous;
            rakeTotal += hand.rake;
            emit HandSettled(tableId, number, previous, hand.rake);
            ++number;
        }
        if (count != 0) {
            head.record = previous;
            head.lastHand = number - 1;
            treasury[run.token] += rakeTotal;
        }
        return (at, rakeTotal);
    }

    /// @dev Moves one hand's table funds and returns its record (EIP-712 struct hash).
    /// The seat loop is assembly: per seat it reads 16 bytes of calldata and the
    /// player's address from the roster, and reads and writes the player's `locked`
    /// slot; a bad seat or a loss larger than the player's table funds stops the loop
    /// and reverts below with the custom error.
    function _settleHand(TableRun calldata run, CompactHand calldata hand, uint64 number, bytes32 previous)
        private
        returns (bytes32)
    {
        bytes calldata packed = hand.seats;
        address[] calldata roster = run.roster;
        address token = run.token;
        uint256 seats = packed.length / _SEAT_BYTES;
        if (seats == 0 || packed.length % _SEAT_BYTES != 0) revert BadSeats(run.tableId, number);
        if (hand.rake > _AMOUNT_MASK) revert RakeTooLarge(run.tableId, number);
        uint256 scratch; // players[] then deltas[] as 32-byte words, past the free pointer
        uint256 failure; // 0 ok, 1 bad seat, 2 loss larger than the player's table funds
        address culprit;
        uint256 need;
        uint256 held;
        int256 sum = int256(hand.rake);
        assembly ("memory-safe") {
            scratch := mload(0x40)
            let lockedSlot := locked.slot
            for { let s := 0 } lt(s, seats) { s := add(s, 1) } {
                let word := calldataload(add(packed.offset, mul(s, 16)))
                let index := shr(248, word)
                let lost := and(shr(240, word), 0xff)
                let amount := and(shr(128, word), 0xffffffffffffffffffffffffffff)
                if or(iszero(lt(index, roster.length)), or(gt(lost, 1), and(eq(lost, 1), iszero(amount)))) {
                    failure := 1
                    break
                }
                let player := calldataload(add(roster.offset, mul(index, 32)))
                if shr(160, player) {
                    failure := 1
                    break
                }
                mstore(0x00, player)
                mstore(0x20, lockedSlot)
                mstore(0x20, keccak256(0x00, 0x40))
                mstore(0x00, token)
                let slot := keccak256(0x00, 0x40)
                let current := sload(slot)
                let delta := amount
                switch lost
                case 1 {
                    if lt(current, amount) {
                        failure := 2
                        culprit := player
                        need := amount
                        held := current
                        break
                    }
                    sstore(slot, sub(current, amount))
                    delta := sub(0, amount)
                }
                default {
                    let grown := add(current, amount)
                    if lt(grown, current) {
                        failure := 1
                        break
                    }
                    sstore(slot, grown)
                }
                sum := add(sum, delta)
                mstore(add(scratch, mul(s, 32)), player)
                mstore(add(scratch, mul(add(seats, s), 32)), delta)
            }
        }
        if (failure == 1) revert BadSeats(run.tableId, number);
        if (failure == 2) revert InsufficientLocked(culprit, token, need, held);
        if (sum != 0) revert NotZeroSum(run.tableId, number);
        bytes32 playersHash;
        bytes32 deltasHash;
        assembly ("memory-safe") {
            playersHash := keccak256(scratch, mul(seats, 32))
            deltasHash := keccak256(add(scratch, mul(seats, 32)), mul(seats, 32))
        }
        return keccak256(
            abi.encode(
                HAND_TYPEHASH, run.tableId, number, token, hand.commitment, previous, hand.rake, playersHash, deltasHash
            )
        );
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert BadSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > _HALF_ORDER || (v != 27 && v != 28)) revert BadSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert BadSignature();
        return signer;
    }
}
